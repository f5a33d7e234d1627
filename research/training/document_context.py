"""Document context: what a first pass tagged the same word elsewhere in
its document, as a word feature of a second pass.

A news article names an entity in full once ("Leicester City") and then
shortly ("Leicester"); a window of five words cannot see the other
mentions, so its tags of one word disagree across the article. The value
of the 'document' feature of a capitalized word is the entity type (or 'O')
that the first pass gave most of the word's other occurrences in the same
document (ties: the first in sorted order), and '' for a word with no other
occurrence or without a capital letter.

The first pass must not have trained on the sentences it tags, or its tags
of training sentences would be nearly perfect and the second pass would
trust them too much: research.training.two_passes trains two first-pass
models, each on half of the training documents, tags each half with the
other half's model, and tags dev, test and new text with both (scores
averaged).
"""

import collections

import numpy as np

from research.evaluation import metrics

NONE = ''


def domain(types):
  """Every value the feature takes, for a tag set of these entity types."""
  return [NONE, 'O', *sorted(types)]


def word_types(tags):
  """The entity type covering each word of a sentence ('O' outside)."""
  out = ['O'] * len(tags)
  for start, end, type_ in metrics.chunks(tags):
    out[start:end] = [type_] * (end - start)
  return out


def values(sentences, predicted):
  """The feature's value for every word: per-sentence lists of str.

  sentences: data.Sentences (their `path` and `document` say which
  document each is in); predicted: the first pass's tags of each sentence.
  """
  occurrences = collections.defaultdict(list)  # (doc, word) -> types
  types = [word_types(tags) for tags in predicted]
  for s, ts in zip(sentences, types):
    for word, t in zip(s.tokens, ts):
      if any(c.isupper() for c in word[:1]):
        occurrences[(s.path, s.document, word)].append(t)
  out = []
  for s, ts in zip(sentences, types):
    row = []
    for word, t in zip(s.tokens, ts):
      seen = occurrences.get((s.path, s.document, word))
      if not seen or len(seen) == 1:
        row.append(NONE)
        continue
      counts = collections.Counter(seen)
      counts[t] -= 1  # the other occurrences only
      best = max(sorted(counts), key=lambda k: counts[k])
      row.append(best if counts[best] > 0 else NONE)
    out.append(row)
  return out


def window_column(sentence_index_N, k, token_ids_N, pad_id):
  """The [N, 2k+1] ids of a per-word feature at each window slot: a word's
  neighbour's id inside its sentence, `pad_id` past the sentence's ends."""
  N = len(sentence_index_N)
  offsets = np.arange(-k, k + 1)
  neighbour = np.arange(N)[:, None] + offsets[None, :]
  inside = (neighbour >= 0) & (neighbour < N)
  clipped = np.clip(neighbour, 0, max(N - 1, 0))
  same = inside & (sentence_index_N[clipped] == sentence_index_N[:, None])
  return np.where(same, token_ids_N[clipped], pad_id).astype(np.int32)
