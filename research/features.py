"""Token features that reach words without a vector: affixes and shape.

Each token gets one id per feature kind, all kinds sharing one lookup table
`L_feat` (kind j's ids are offset past kinds 0..j-1); every window position
contributes its rows of `L_feat` beside its word and casing vectors
(`research.model.concat_window`). Within a kind id 0 is window padding and id
1 a value never seen in training.

  prefix   the first n characters of the lowercased word ('wash' for
           Washington with n=4; the whole word if shorter)
  suffix   the last n characters ('gton')
  shape    characters mapped to X (upper), x (lower), d (digit), others
           kept, runs collapsed: 'Washington' -> 'Xx', 'U.S.' -> 'X.X.',
           '1996-08-22' -> 'd-d-d'
"""

import dataclasses
import re

import numpy as np

KINDS = ('prefix', 'suffix', 'shape')
PAD, UNSEEN = 0, 1
_RUNS = re.compile(r'(.)\1+')


def shape(token):
  """The word shape: X/x/d for upper/lower/digit, runs collapsed."""
  mapped = ''.join(
    'X' if c.isupper() else 'x' if c.islower() else 'd' if c.isdigit() else c
    for c in token
  )
  return _RUNS.sub(r'\1', mapped)


def value(kind, token, n):
  """The feature `kind` of a token (affixes of length n)."""
  if kind == 'prefix':
    return token.lower()[:n]
  if kind == 'suffix':
    return token.lower()[-n:]
  if kind == 'shape':
    return shape(token)
  raise ValueError(f'unknown feature {kind!r}; expected one of {KINDS}')


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureVocab:
  """The values of each feature kind seen in training, as rows of L_feat.

  Attributes:
    kinds: the feature kinds, in column order.
    affix_length: n of the prefix and suffix.
    index: per kind, value -> id within the kind (from 2).
    offsets: per kind, its first row in L_feat.
    size: rows of L_feat.
  """

  kinds: tuple
  affix_length: int
  index: tuple
  offsets: tuple
  size: int

  @classmethod
  def build(cls, train_sentences, kinds, affix_length=3):
    for kind in kinds:
      value(kind, 'a', affix_length)  # checks the kind
    index, offsets, size = [], [], 0
    tokens = sorted({t for s in train_sentences for t in s.tokens})
    for kind in kinds:
      values = sorted({value(kind, t, affix_length) for t in tokens})
      index.append({v: i + 2 for i, v in enumerate(values)})
      offsets.append(size)
      size += len(values) + 2
    return cls(tuple(kinds), affix_length, tuple(index), tuple(offsets), size)

  def __len__(self):
    return len(self.kinds)

  def to_json(self):
    """The vocabulary as JSON data (`from_json` reads it back)."""
    return {
      'kinds': list(self.kinds),
      'affix_length': self.affix_length,
      'values': [sorted(ix, key=ix.get) for ix in self.index],
    }

  @classmethod
  def from_json(cls, obj):
    index, offsets, size = [], [], 0
    for values in obj['values']:
      index.append({v: i + 2 for i, v in enumerate(values)})
      offsets.append(size)
      size += len(values) + 2
    return cls(
      tuple(obj['kinds']),
      obj['affix_length'],
      tuple(index),
      tuple(offsets),
      size,
    )

  def ids(self, token):
    """The token's row of L_feat for every kind [F]."""
    return tuple(
      off + ix.get(value(kind, token, self.affix_length), UNSEEN)
      for kind, ix, off in zip(self.kinds, self.index, self.offsets)
    )

  def pad_ids(self):
    return tuple(off + PAD for off in self.offsets)

  def describe(self):
    sizes = ', '.join(
      f'{kind} {len(ix):,}' for kind, ix in zip(self.kinds, self.index)
    )
    return f'features (n={self.affix_length}): {sizes} values'


def token_ids(sentences, vocab):
  """[N, F] int32 feature rows of every token, in order."""
  cache = {}
  rows = [
    cache.setdefault(t, vocab.ids(t)) if t not in cache else cache[t]
    for s in sentences
    for t in s.tokens
  ]
  return np.asarray(rows, np.int32).reshape(-1, len(vocab))
