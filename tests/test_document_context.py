"""Document context's feature values (research.training.document_context):
by hand on a small document, and against a per-word count on random ones."""

import collections
import random

import numpy as np

from research.data.conll import Sentence
from research.evaluation import metrics
from research.training import document_context

TAGS = ['O', 'B-LOC', 'I-LOC', 'E-LOC', 'S-LOC', 'S-ORG', 'S-PER', 'B-PER']


def _ids(tags_by_sentence):
  flat = [TAGS.index(t) for ts in tags_by_sentence for t in ts]
  return np.array(flat, np.int64)


def test_values_by_hand():
  """'Leicester' is LOC twice and ORG once in its document: each occurrence
  reads the majority of the others (a tie: the first type in sorted
  order); a word seen once, a lower-case word and a word of another
  document read ''."""
  doc = [
    Sentence(('Leicester', 'City', 'won'), ('O',) * 3, 'a', document=0),
    Sentence(('in', 'Leicester', 'today'), ('O',) * 3, 'a', document=0),
    Sentence(('Leicester', 'won', 'Paris'), ('O',) * 3, 'a', document=0),
    Sentence(('Paris',), ('O',), 'a', document=1),
  ]
  pred = [
    ['B-LOC', 'E-LOC', 'O'],
    ['O', 'S-LOC', 'O'],
    ['S-ORG', 'O', 'S-PER'],
    ['S-LOC'],
  ]
  got = document_context.values(doc, _ids(pred), TAGS)
  # Leicester: LOC, LOC, ORG. The first's others: LOC, ORG (a tie: LOC);
  # the second's: LOC, ORG (LOC); the third's: LOC, LOC (LOC).
  want = ['LOC', '', '', '', 'LOC', '', 'LOC', '', '', '']
  assert list(got) == want


def _reference(sentences, predicted):
  """The value of each word, one word at a time: the most common type of
  its other capitalized occurrences in its document."""
  types = []
  for tags in predicted:
    ts = ['O'] * len(tags)
    for start, end, type_ in metrics.chunks(tags):
      ts[start:end] = [type_] * (end - start)
    types.append(ts)
  occurrences = collections.defaultdict(list)
  for s, ts in zip(sentences, types):
    for word, t in zip(s.tokens, ts):
      if word[:1].isupper():
        occurrences[(s.path, s.document, word)].append(t)
  out = []
  for s, ts in zip(sentences, types):
    for word, t in zip(s.tokens, ts):
      counts = collections.Counter(occurrences.get((s.path, s.document, word)))
      counts[t] -= 1
      best = max(sorted(counts), key=lambda k: counts[k], default=None)
      out.append(best if best is not None and counts[best] > 0 else '')
  return out


def test_values_equal_a_count_per_word():
  rng = random.Random(0)
  words = ['Leicester', 'City', 'Paris', 'the', 'won', 'Ann', 'x', 'Zed']
  for _ in range(200):
    sentences, pred = [], []
    for _ in range(rng.randint(1, 8)):
      n = rng.randint(0, 6)
      sentences.append(
        Sentence(
          tuple(rng.choice(words) for _ in range(n)),
          ('O',) * n,
          rng.choice(['a', 'b']),
          document=rng.randint(0, 2),
        )
      )
      pred.append([rng.choice(TAGS) for _ in range(n)])
    got = document_context.values(sentences, _ids(pred), TAGS)
    assert list(got) == _reference(sentences, pred), (sentences, pred)
