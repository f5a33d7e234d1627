"""Tests for research.data.features: affix and shape values, the feature
vocabulary's rows of L_feat, and its JSON round trip."""

import json

import numpy as np
import pytest

from research.data import features
from research.data.conll import Sentence

KINDS = ('prefix', 'suffix', 'shape')


def _sentence(*tokens):
  return Sentence(tuple(tokens), ('O',) * len(tokens))


TRAIN = [
  _sentence('Washington', 'visited', 'U.S.', 'on', '1996-08-22', '.'),
  _sentence('washed', 'the', 'iPhone', 'of', 'Washington', '...'),
]


@pytest.mark.parametrize(
  'token,expected',
  [
    ('Washington', 'Xx'),
    ('U.S.', 'X.X.'),
    ('1996-08-22', 'd-d-d'),
    ('iPhone', 'xXx'),
    ('McDonald', 'XxXx'),
    ('ABC', 'X'),
    ('a', 'x'),
    ('...', '.'),  # runs of any character collapse
    ('3.14', 'd.d'),
    ('', ''),
  ],
)
def test_shape(token, expected):
  assert features.shape(token) == expected
  assert features.value('shape', token, 3) == expected


def test_affixes_are_lowercased_and_whole_when_short():
  assert features.value('prefix', 'Washington', 4) == 'wash'
  assert features.value('suffix', 'Washington', 4) == 'gton'
  assert features.value('prefix', 'Of', 3) == 'of'
  assert features.value('suffix', 'Of', 3) == 'of'
  with pytest.raises(ValueError, match='unknown feature'):
    features.value('colour', 'Washington', 3)


@pytest.fixture
def vocab():
  return features.FeatureVocab.build(TRAIN, KINDS, affix_length=3)


def test_rows_of_each_kind_are_their_own(vocab):
  """Kind j's rows are offsets[j] + (PAD 0, UNSEEN 1, then the training
  values): disjoint ranges that tile [0, size)."""
  assert vocab.kinds == KINDS and len(vocab) == 3
  tokens = sorted({t for s in TRAIN for t in s.tokens})
  ranges = []
  for j, kind in enumerate(KINDS):
    values = {features.value(kind, t, 3) for t in tokens}
    assert set(vocab.index[j]) == values
    assert sorted(vocab.index[j].values()) == list(range(2, 2 + len(values)))
    ranges.append((vocab.offsets[j], vocab.offsets[j] + 2 + len(values)))
  assert ranges[0][0] == 0 and ranges[-1][1] == vocab.size
  assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
  assert vocab.pad_ids() == tuple(lo + features.PAD for lo, _ in ranges)
  for t in tokens:
    ids = vocab.ids(t)
    for j, (lo, hi) in enumerate(ranges):
      assert lo + 2 <= ids[j] < hi  # a seen value, never PAD or UNSEEN


def test_unseen_values_get_the_unseen_row(vocab):
  # 'zzz' shares no affix with training; 'Berlin' shares the shape Xx only.
  unseen = tuple(off + features.UNSEEN for off in vocab.offsets)
  assert vocab.ids('zzz9!') == unseen
  ids = vocab.ids('Berlin')
  assert ids[:2] == unseen[:2]
  assert ids[2] == vocab.ids('Washington')[2] != unseen[2]
  # Shared values share rows: 'washed' and 'Washington' have one prefix.
  assert vocab.ids('washed')[0] == vocab.ids('Washington')[0]


def test_json_round_trip(vocab):
  data = json.loads(json.dumps(vocab.to_json()))
  again = features.FeatureVocab.from_json(data)
  assert again.kinds == vocab.kinds
  assert again.affix_length == vocab.affix_length
  assert again.offsets == vocab.offsets and again.size == vocab.size
  assert again.index == vocab.index
  for token in ['Washington', 'zzz9!', 'Berlin', '...', 'U.S.']:
    assert again.ids(token) == vocab.ids(token)


def test_token_ids_in_order(vocab):
  ids = features.token_ids(TRAIN, vocab)
  assert ids.shape == (12, 3) and ids.dtype == np.int32
  tokens = [t for s in TRAIN for t in s.tokens]
  np.testing.assert_array_equal(ids, [vocab.ids(t) for t in tokens])


def test_build_refuses_an_unknown_kind():
  with pytest.raises(ValueError, match='unknown feature'):
    features.FeatureVocab.build(TRAIN, ('prefix', 'colour'))


def test_token_ids_with_context_kinds(vocab):
  """A token kind's ids gathered per type and a context kind's per word
  equal each token's FeatureVocab.ids."""
  tokens = [t for s in TRAIN for t in s.tokens]
  gaz = ['LOC' if t[:1].isupper() else '' for t in tokens]
  doc = ['O', 'PER', '', 'never-seen'] * (len(tokens) // 4) + ['O'] * (
    len(tokens) % 4
  )
  full = vocab.with_kind('gazetteer', ['', 'LOC']).with_kind(
    'document', ['', 'O', 'PER']
  )
  per_sentence = {}
  for kind, flat in (('gazetteer', gaz), ('document', doc)):
    it = iter(flat)
    per_sentence[kind] = [[next(it) for _ in s.tokens] for s in TRAIN]
  ids = features.token_ids(TRAIN, full, per_sentence)
  want = [
    full.ids(t, {'gazetteer': g, 'document': d})
    for t, g, d in zip(tokens, gaz, doc)
  ]
  np.testing.assert_array_equal(ids, want)
  assert ids.dtype == np.int32 and ids.shape == (len(tokens), 5)
  with pytest.raises(ValueError, match='need their values'):
    features.token_ids(TRAIN, full, {'gazetteer': per_sentence['gazetteer']})
