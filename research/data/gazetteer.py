"""Gazetteers: lists of entity phrases per type, as a word feature.

A word's gazetteer feature is the set of (position, type) of every listed
phrase that covers it in its sentence: 'B-LOC' (first word of a LOC phrase),
'I-LOC', 'E-LOC' (last) or 'S-LOC' (a one-word phrase), several joined by
'|', '' for none (research.data.features reads it as one value).

Lists come from the training labels (every chunk's words, per type) and
from a user's file (`read`: `TYPE<TAB>phrase` lines). A training sentence
reads a list built without its own fold (`fold_values`): built from all
training labels, every training entity would match itself and the model
would learn to trust the feature more than it deserves on new text.
"""

import collections
import pathlib

from research.errors import UserError
from research.evaluation import metrics

FOLDS = 5
MAX_WORDS = 8  # longest phrase matched


class Gazetteer:
  """Phrases (tuples of words) per entity type."""

  def __init__(self, phrases=None):
    self.phrases = collections.defaultdict(set)
    for type_, items in (phrases or {}).items():
      self.phrases[type_].update(tuple(p) for p in items)

  def __len__(self):
    return sum(len(p) for p in self.phrases.values())

  def add(self, type_, words):
    if 0 < len(words) <= MAX_WORDS:
      self.phrases[type_].add(tuple(words))

  def union(self, other):
    out = Gazetteer(self.phrases)
    for type_, items in other.phrases.items():
      out.phrases[type_].update(items)
    return out

  def to_json(self):
    return {
      t: sorted(' '.join(p) for p in ps) for t, ps in self.phrases.items()
    }

  @classmethod
  def from_json(cls, obj):
    return cls({t: [p.split(' ') for p in ps] for t, ps in obj.items()})

  @classmethod
  def from_sentences(cls, sentences):
    """The chunks of labelled sentences (metrics.chunks), per type."""
    g = cls()
    for s in sentences:
      for start, end, type_ in metrics.chunks(s.tags):
        g.add(type_, s.tokens[start:end])
    return g

  def values(self, tokens):
    """The feature value of every word of a sentence (see the module doc)."""
    marks = [set() for _ in tokens]
    by_words = self._index()
    n = len(tokens)
    for i in range(n):
      for j in range(i + 1, min(n, i + MAX_WORDS) + 1):
        for type_ in by_words.get(tuple(tokens[i:j]), ()):
          if j - i == 1:
            marks[i].add(f'S-{type_}')
            continue
          marks[i].add(f'B-{type_}')
          marks[j - 1].add(f'E-{type_}')
          for k in range(i + 1, j - 1):
            marks[k].add(f'I-{type_}')
    return ['|'.join(sorted(m)) for m in marks]

  def _index(self):
    if getattr(self, '_cached', None) is None:
      index = collections.defaultdict(list)
      for type_, items in sorted(self.phrases.items()):
        for p in items:
          index[p].append(type_)
      self._cached = index
    return self._cached


def read(path):
  """A user's lists: `TYPE<TAB>phrase` lines (blank and # lines skipped)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(
      f'`gazetteer_file={path}`: no such file; give a file of TYPE<TAB>phrase '
      'lines'
    )
  g = Gazetteer()
  for lineno, line in enumerate(
    path.read_text(encoding='utf-8').splitlines(), 1
  ):
    if not line.strip() or line.startswith('#'):
      continue
    type_, tab, phrase = line.partition('\t')
    if not tab or not type_.strip() or not phrase.split():
      raise UserError(
        f'{path}:{lineno}: expected TYPE<TAB>phrase, got {line!r}; separate '
        'the type from the phrase with one tab'
      )
    g.add(type_.strip(), phrase.split())
  return g


def fold_values(sentences, extra=None, folds=FOLDS):
  """Feature values of labelled sentences, each from the lists of the other
  folds (contiguous blocks of sentences, so documents mostly stay whole)
  plus `extra` (a user's Gazetteer, or None)."""
  n = len(sentences)
  fold_of = [i * folds // max(n, 1) for i in range(n)]
  parts = [
    Gazetteer.from_sentences([s for s, f in zip(sentences, fold_of) if f == k])
    for k in range(folds)
  ]
  out = []
  for k in range(folds):
    g = Gazetteer()
    for other, part in enumerate(parts):
      if other != k:
        g = g.union(part)
    if extra is not None:
      g = g.union(extra)
    out.extend(g.values(s.tokens) for s, f in zip(sentences, fold_of) if f == k)
  return out
