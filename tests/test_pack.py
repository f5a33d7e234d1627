"""Tests for research.training.sequence.pack and pack_windows: sentences packed
whole into rows of T positions (research.formulas.crf's layout)."""

import numpy as np
import pytest

from research import setup as setup_lib
from research.data import dataset as dataset_lib
from research.data import vocab as vocab_lib
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import engine
from research.training import sequence


def _check_packing(lengths, T):
  """Every word exactly once, in its sentence's order, each sentence whole
  in one row starting where `starts` says; words first, then padding."""
  packed = sequence.pack(lengths, T)
  lengths = np.asarray(lengths, np.int64)
  n = int(lengths.sum())
  tokens, starts = packed.tokens, packed.starts
  assert tokens.shape == starts.shape and tokens.shape[1] == T
  assert tokens.dtype == np.int32 and starts.dtype == bool
  mask = tokens < n
  assert np.all(tokens[~mask] == n)  # padding is index n
  assert sorted(tokens[mask].tolist()) == list(range(n))
  assert not np.any(starts & ~mask)
  first_word = np.cumsum(lengths) - lengths
  nonempty = np.flatnonzero(lengths > 0)
  assert starts.sum() == len(nonempty)
  for i in nonempty:
    r, o = np.argwhere(tokens == first_word[i])[0]
    assert starts[r, o]
    row = tokens[r, o : o + lengths[i]]
    np.testing.assert_array_equal(row, first_word[i] + np.arange(lengths[i]))
    assert not starts[r, o + 1 : o + lengths[i]].any()
  for mask_T, starts_T in zip(mask, starts):
    k = int(mask_T.sum())
    assert mask_T[:k].all() and not mask_T[k:].any()
    assert k == 0 or starts_T[0]
  return packed


@pytest.mark.parametrize('seed', range(5))
def test_pack_puts_every_word_once_and_never_splits_a_sentence(seed):
  rng = np.random.default_rng(seed)
  T = int(rng.integers(4, 20))
  lengths = rng.integers(0, T + 1, int(rng.integers(1, 60)))
  packed = _check_packing(lengths, T)
  # First fit decreasing: no two rows could be merged.
  used = (packed.tokens < lengths.sum()).sum(1)
  assert len(used) == 1 or np.sort(used)[:2].sum() > T


def test_pack_fills_rows_with_short_sentences():
  packed = _check_packing([3, 1, 4, 1, 5, 2], 8)
  assert len(packed.tokens) == 2  # 16 words in two full rows
  assert (packed.tokens < 16).all()
  np.testing.assert_array_equal(packed.starts.sum(1), [2, 4])


def test_pack_edge_cases():
  packed = _check_packing([], 5)
  assert packed.tokens.shape == (1, 5)  # one row of padding
  _check_packing([0, 0], 5)
  _check_packing([5, 5, 5], 5)  # full rows, one sentence each
  with pytest.raises(ValueError, match='exceeds T=5'):
    sequence.pack([2, 6, 1], 5)


def test_row_length():
  assert sequence.row_length([3, 10]) == 64
  assert sequence.row_length([3, 70]) == 72
  assert sequence.row_length([72]) == 72
  assert sequence.row_length([5], minimum=1, multiple=4) == 8
  assert sequence.row_length([]) == 64


@pytest.mark.parametrize('with_feats', [False, True])
def test_pack_windows_appends_one_padding_window(with_feats):
  rng = np.random.default_rng(0)
  lengths = [3, 1, 2]
  n, K = 6, 3
  feats = rng.integers(0, 9, (n, K, 2)).astype(np.int32) if with_feats else None
  windows = vocab_lib.Windows(
    rng.integers(3, 9, (n, K)).astype(np.int32),
    rng.integers(1, 8, (n, K)).astype(np.int32),
    rng.integers(1, 4, n).astype(np.int32),
    np.repeat(np.arange(3), lengths).astype(np.int32),
    feats,
  )
  packed, arrays = sequence.pack_windows(windows, lengths, 4)
  np.testing.assert_array_equal(packed.tokens, sequence.pack(lengths, 4).tokens)
  words, casing, *rest = arrays
  labels = rest[-1]
  assert len(arrays) == (4 if with_feats else 3)
  for a, original in zip(
    (words, casing, labels), (windows.words, windows.casing, windows.labels)
  ):
    assert len(a) == n + 1
    np.testing.assert_array_equal(a[:n], original)
  assert (words[n] == 1).all()  # PAD_RIGHT's id
  assert (casing[n] == 0).all() and labels[n] == 0
  if with_feats:
    assert rest[0].shape == (n + 1, K, 2)
    np.testing.assert_array_equal(rest[0][:n], feats)


def test_an_ensemble_of_copies_predicts_as_one_member(corpus):
  """Scores (and transitions) averaged over members: identical members
  decode exactly as one; a different member changes some tags."""
  ds = dataset_lib.load_dataset(
    corpus,
    embeddings='random',
    features=('prefix', 'shape'),
    tag_scheme='iobes',
    log=lambda _: None,
  )
  model_cfg = model_lib.ModelConfig(hidden=8)
  one = setup_lib.init_params(ds, model_cfg, 0, transitions=True)
  other = setup_lib.init_params(ds, model_cfg, 1, transitions=True)
  one['A'] = one['A'] + np.eye(len(ds.tags), dtype=np.float32)
  lengths = sequence.sentence_lengths(ds.splits['dev'])

  def predict(params):
    return setup_lib.predict(
      params,
      ds.windows['dev'],
      lengths,
      ds.tags,
      ds.tag_scheme,
      model_cfg,
      objectives.get('crf'),
      'argmax',
      0.0,
    )[0]

  single = predict(one)
  np.testing.assert_array_equal(predict(engine.stack([one, one])), single)
  assert np.any(predict(engine.stack([one, other])) != single)
