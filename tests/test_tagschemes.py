"""Tests for research.data.tagschemes: conversions keep the chunks, and the
valid transitions are exactly those of the scheme's well-formed tag
sequences."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.data import tagschemes
from research.evaluation import metrics
from research.formulas import crf
from research.formulas import objectives
from research.training import prediction
from research.training import sequence

TYPES = ('PER', 'LOC', 'MISC-X')  # a type may hold a hyphen
SCHEMES = ('iob1', 'iob2', 'iobes')


def _random_tags(rng, length):
  """Any tags of B-, I-, E-, S- or O, well formed or not."""
  prefixes = ['B', 'I', 'E', 'S']
  tags = []
  for _ in range(length):
    if rng.random() < 0.3:
      tags.append('O')
    else:
      prefix, type_ = rng.choice(prefixes), rng.choice(TYPES[:2])
      tags.append(f'{prefix}-{type_}')
  return tags


def _tags(scheme, types):
  """Every tag of `scheme` over `types`, 'O' first."""
  prefixes = 'BIES' if scheme == 'iobes' else 'BI'
  return ['O'] + [f'{p}-{t}' for t in types for p in prefixes]


def _well_formed(tags, scheme):
  """A sequence is written in `scheme` iff converting it to `scheme`
  leaves it as it is."""
  return tagschemes.convert(list(tags), scheme) == list(tags)


def test_conversion_examples():
  iob2 = ['B-PER', 'I-PER', 'O', 'B-LOC', 'B-LOC', 'I-LOC', 'B-PER']
  iobes = ['B-PER', 'E-PER', 'O', 'S-LOC', 'B-LOC', 'E-LOC', 'S-PER']
  iob1 = ['I-PER', 'I-PER', 'O', 'I-LOC', 'B-LOC', 'I-LOC', 'I-PER']
  for source in (iob2, iobes, iob1):
    assert tagschemes.convert(source, 'iob2') == iob2
    assert tagschemes.convert(source, 'iobes') == iobes
    assert tagschemes.convert(source, 'iob1') == iob1
  assert tagschemes.convert([], 'iobes') == []
  assert tagschemes.convert(['O', 'O'], 'iob1') == ['O', 'O']


@pytest.mark.parametrize('seed', range(3))
def test_round_trips_keep_the_chunks(seed):
  """metrics.chunks is unchanged by any chain of conversions, from any tag
  sequence (conlleval reads ill-formed ones too); writing in a scheme gives
  a well-formed sequence of that scheme."""
  rng = np.random.default_rng(seed)
  for _ in range(200):
    tags = _random_tags(rng, int(rng.integers(0, 9)))
    found = metrics.chunks(tags)
    for chain in itertools.permutations(SCHEMES):
      current = tags
      for scheme in chain:
        current = tagschemes.convert(current, scheme)
        assert metrics.chunks(current) == found, (tags, chain)
        assert _well_formed(current, scheme)
        assert len(current) == len(tags)


def test_file_scheme():
  assert tagschemes.file_scheme([['B-PER', 'I-PER'], ['O']]) == 'iob2'
  assert tagschemes.file_scheme([['O', 'I-PER'], ['B-PER']]) == 'iob1'
  assert tagschemes.file_scheme([['B-PER', 'I-LOC']]) == 'iob1'
  assert tagschemes.file_scheme([['B-PER'], ['S-LOC']]) == 'iobes'
  assert tagschemes.file_scheme([]) == 'iob2'


def test_tag_set():
  assert tagschemes.tag_set(['O', 'B-PER', 'I-PER'], 'file') == [
    'O',
    'B-PER',
    'I-PER',
  ]
  assert tagschemes.tag_set(['O', 'I-PER', 'B-LOC'], 'iobes') == [
    'O',
    'B-LOC',
    'B-PER',
    'E-LOC',
    'E-PER',
    'I-LOC',
    'I-PER',
    'S-LOC',
    'S-PER',
  ]


@pytest.mark.parametrize(
  'scheme,longest', [('iob2', 4), ('iobes', 4)], ids=['iob2', 'iobes']
)
def test_valid_transitions_allow_exactly_the_well_formed(scheme, longest):
  """Every sequence of up to `longest` tags (two types) is well formed in
  the scheme iff its first tag may start, its last may end and every
  transition is allowed: valid_transitions forbids exactly what it
  should."""
  tags = _tags(scheme, TYPES[:2])
  allowed, first, last = tagschemes.valid_transitions(tags, scheme)
  C = len(tags)
  assert allowed.shape == (C, C) and first.shape == last.shape == (C,)
  for n in range(1, longest + 1):
    for ids in itertools.product(range(C), repeat=n):
      by_table = (
        first[ids[0]]
        and last[ids[-1]]
        and all(allowed[i, j] for i, j in zip(ids, ids[1:]))
      )
      seq = [tags[i] for i in ids]
      assert by_table == _well_formed(seq, scheme), seq


def test_valid_transitions_examples():
  tags = ['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC']
  allowed, first, last = tagschemes.valid_transitions(tags, 'iob2')
  ix = {t: i for i, t in enumerate(tags)}
  assert not first[ix['I-PER']] and first[ix['B-PER']] and last.all()
  assert not allowed[ix['O'], ix['I-PER']]
  assert not allowed[ix['B-LOC'], ix['I-PER']]
  assert allowed[ix['B-PER'], ix['I-PER']] and allowed[ix['I-PER'], ix['I-PER']]
  assert allowed[ix['I-LOC'], ix['B-PER']] and allowed[ix['B-PER'], ix['O']]
  # 25 less the 3 + 3 transitions into an I- from other than its B-, I-.
  assert allowed.sum() == 25 - 6

  tags = tagschemes.tag_set(['O', 'B-PER'], 'iobes')
  allowed, first, last = tagschemes.valid_transitions(tags, 'iobes')
  ix = {t: i for i, t in enumerate(tags)}
  assert list(first) == [t[0] in 'OBS' for t in tags]
  assert list(last) == [t[0] in 'OES' for t in tags]
  assert allowed[ix['B-PER'], ix['E-PER']] and allowed[ix['E-PER'], ix['O']]
  assert not allowed[ix['B-PER'], ix['O']]
  assert not allowed[ix['S-PER'], ix['E-PER']]
  # IOB1: I- may open a chunk; every transition is allowed.
  allowed, first, last = tagschemes.valid_transitions(
    ['O', 'B-PER', 'I-PER'], 'iob1'
  )
  assert allowed.all() and first.all() and last.all()


def test_viterbi_with_the_valid_transitions_decodes_well_formed_tags():
  """prediction.decode_transitions adds NEG where valid_transitions forbids:
  whatever the scores, Viterbi's paths are well-formed IOBES (several
  sentences a row, as research.training.sequence packs them)."""
  tags = tagschemes.tag_set(['O', 'B-PER', 'B-LOC', 'B-ORG'], 'iobes')
  C = len(tags)
  allowed = tagschemes.valid_transitions(tags, 'iobes')
  trans = prediction.decode_transitions(
    None, C, allowed, objectives.get('xent')
  )
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 7, 40)
  packed = sequence.pack(lengths, 12)
  n = int(lengths.sum())
  mask = packed.tokens < n
  f = jnp.asarray(3.0 * rng.standard_normal(packed.tokens.shape + (C,)))
  layout = (jnp.asarray(mask), jnp.asarray(packed.starts))

  def decoded(trans):
    path = np.asarray(jax.jit(crf.viterbi)(f, *layout, trans)[1])
    return [
      [tags[i] for i in path[r, o : o + length]]
      for r, o, length in _sentences(mask, packed.starts)
    ]

  for seq in decoded(trans):
    assert _well_formed(seq, 'iobes'), seq
  # Without the constraints the same scores decode ill-formed sequences.
  plain = decoded(crf.init_transitions(C, f.dtype))
  assert not all(_well_formed(seq, 'iobes') for seq in plain)
  assert sum(map(len, plain)) == n


def _sentences(mask, starts):
  """(row, offset, length) of every sentence of a layout."""
  out = []
  for r in range(len(mask)):
    offsets = list(np.flatnonzero(starts[r])) + [int(mask[r].sum())]
    out += [(r, o, e - o) for o, e in zip(offsets[:-1], offsets[1:])]
  return out
