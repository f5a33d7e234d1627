"""Token features that reach words without a vector: affixes and shape.

Each token gets one id per feature kind, all kinds sharing one lookup table
`L_feat` (kind j's ids are offset past kinds 0..j-1); every window position
contributes its rows of `L_feat` beside its word and casing vectors
(`research.formulas.model.concat_window`). Within a kind id 0 is window padding
and id 1 a value never seen in training.

  prefix   the first n characters of the lowercased word ('wash' for
           Washington with n=4; the whole word if shorter)
  suffix   the last n characters ('gton')
  shape    characters mapped to X (upper), x (lower), d (digit), others
           kept, runs collapsed: 'Washington' -> 'Xx', 'U.S.' -> 'X.X.',
           '1996-08-22' -> 'd-d-d'
  gazetteer  the listed phrases covering the word (research.data.gazetteer)
  document   a first pass's tag of the word elsewhere in its document
           (research.training.document_context)

The last two depend on the sentence, so their values are given per
sentence (`context`: kind -> one list of values per sentence).
"""

import dataclasses
import re

import numpy as np

KINDS = ('prefix', 'suffix', 'shape', 'gazetteer', 'document')
CONTEXT_KINDS = ('gazetteer', 'document')  # values given per sentence
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
  def build(cls, train_sentences, kinds, affix_length=3, context=None):
    """The values of `kinds` in the training sentences; context: for each
    kind of CONTEXT_KINDS, its values per training sentence (lists of
    str; any lists holding every value the kind takes will do)."""
    for kind in kinds:
      if kind not in KINDS:
        raise ValueError(f'unknown feature {kind!r}; expected one of {KINDS}')
    index, offsets, size = [], [], 0
    tokens = sorted({t for s in train_sentences for t in s.tokens})
    for kind in kinds:
      if kind in CONTEXT_KINDS:
        values = sorted({v for vs in context[kind] for v in vs})
      else:
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

  def ids(self, token, context_values=None):
    """The token's row of L_feat for every kind [F] (context_values: its
    value of each kind of CONTEXT_KINDS)."""
    return tuple(
      off
      + ix.get(
        context_values[kind]
        if kind in CONTEXT_KINDS
        else value(kind, token, self.affix_length),
        UNSEEN,
      )
      for kind, ix, off in zip(self.kinds, self.index, self.offsets)
    )

  def without(self, kind):
    """This vocabulary less its last kind `kind` (its rows come last)."""
    if self.kinds[-1] != kind:
      raise ValueError(f'{kind!r} is not the last kind of {self.kinds}')
    return FeatureVocab(
      self.kinds[:-1],
      self.affix_length,
      self.index[:-1],
      self.offsets[:-1],
      self.offsets[-1],
    )

  def with_kind(self, kind, values):
    """This vocabulary with a kind of CONTEXT_KINDS added last, taking
    `values` (its rows come after every other kind's; `without` undoes it)."""
    index = {v: i + 2 for i, v in enumerate(sorted(set(values)))}
    return FeatureVocab(
      self.kinds + (kind,),
      self.affix_length,
      self.index + (index,),
      self.offsets + (self.size,),
      self.size + len(index) + 2,
    )

  def pad_ids(self):
    return tuple(off + PAD for off in self.offsets)

  def describe(self):
    sizes = ', '.join(
      f'{kind} {len(ix):,}' for kind, ix in zip(self.kinds, self.index)
    )
    return f'features (n={self.affix_length}): {sizes} values'


def token_ids(sentences, vocab, context=None):
  """[N, F] int32 feature rows of every token, in order; context: kind ->
  the values of each sentence's words, for the kinds of CONTEXT_KINDS.
  A token kind's value is computed once per word type; each column is then
  gathered by numpy."""
  needed = [k for k in vocab.kinds if k in CONTEXT_KINDS]
  missing = [k for k in needed if not context or k not in context]
  if missing:
    raise ValueError(f'the features {missing} need their values (context)')
  flat = [t for s in sentences for t in s.tokens]
  types = {}
  type_N = np.fromiter(
    (types.setdefault(t, len(types)) for t in flat), np.int64, len(flat)
  )
  columns = []
  for kind, ix, off in zip(vocab.kinds, vocab.index, vocab.offsets):
    if kind in CONTEXT_KINDS:
      values = [v for vs in context[kind] for v in vs]
      if len(values) != len(flat):
        raise ValueError(f'{kind}: {len(values)} values for {len(flat)} tokens')
      column = np.fromiter((ix.get(v, UNSEEN) for v in values), np.int32)
    else:
      n = vocab.affix_length
      of_type = np.fromiter(
        (ix.get(value(kind, t, n), UNSEEN) for t in types), np.int32
      )
      column = of_type[type_N]
    columns.append(column + np.int32(off))
  if not columns:
    return np.zeros((len(flat), 0), np.int32)
  return np.stack(columns, axis=1).astype(np.int32)
