"""The dilated encoder (research.formulas.dilated): its hand-derived
backprop against autodiff in float64, each wrong derivation shown to fail,
what a position reads, and the model trained and used as a user does."""

import json
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.formulas import autodiff
from research.formulas import derivation_problems as problems
from research.formulas import derivations
from research.formulas import dilated
from tests.conftest import run_entry
from tests.conftest import write_corpus

RTOL = 1e-10


def _rng(*parts):
  return np.random.default_rng(zlib.crc32('/'.join(map(str, parts)).encode()))


def _failed(diffs):
  return {d.name for d in diffs if not d.ok}


def _check(layers, repeats, seed='ok'):
  with jax.enable_x64(True):
    problem = problems.sample_dilated(
      _rng(seed, layers, repeats), layers, repeats
    )
    return autodiff.compare(*derivations.dilated_case(problem, repeats), RTOL)


@pytest.mark.parametrize('layers,repeats', [(1, 1), (3, 1), (2, 3)])
def test_backprop_equals_autodiff(layers, repeats):
  diffs = _check(layers, repeats)
  assert {d.name for d in diffs} == {'W_dil', 'b_dil', 'a'}
  assert not _failed(diffs), diffs


def _off_by_one(du_BxTx3H, idx_Tx3, valid_BxTx3):
  """The transposed gather with the dilation one too large."""
  T = idx_Tx3.shape[0]
  shift = jnp.asarray([-1, 0, 1])[None, :]
  wrong = jnp.clip(idx_Tx3 + shift, 0, T - 1)
  return _right_gather_backward(du_BxTx3H, wrong, valid_BxTx3)


def _leaking(du_BxTx3H, idx_Tx3, valid_BxTx3):
  """The transposed gather without the mask: gradient crosses sentence
  boundaries and reaches padding."""
  return _right_gather_backward(du_BxTx3H, idx_Tx3, jnp.ones_like(valid_BxTx3))


_right_gather_backward = dilated.gather_windows_backward


def _not_summed(params, caches, dh_BxTxH):
  """encode_backward keeping only the first repeat's gradients of a shared
  layer (the last one visited), not their sum."""
  n = params['W_dil'].shape[0]
  dW = jnp.zeros_like(params['W_dil'])
  db = jnp.zeros_like(params['b_dil'])
  dh = dh_BxTxH
  for i in reversed(range(len(caches))):
    layer = i % n
    dh, dW_l, db_l = dilated.conv_layer_backward(
      dh, params['W_dil'][layer], caches[i]
    )
    dW, db = dW.at[layer].set(dW_l), db.at[layer].set(db_l)
  return dh, {'W_dil': dW, 'b_dil': db}


@pytest.mark.parametrize(
  'name,patch,layers,repeats,expected',
  [
    ('dilation off by one', ('gather_windows_backward', _off_by_one), 3, 1,
     {'a', 'W_dil', 'b_dil'}),
    ('row boundary leaking', ('gather_windows_backward', _leaking), 3, 1,
     {'a', 'W_dil', 'b_dil'}),
    ('shared block not summed', ('encode_backward', _not_summed), 2, 3,
     {'W_dil', 'b_dil'}),
  ],
)  # fmt: skip
def test_wrong_derivations_fail(
  monkeypatch, name, patch, layers, repeats, expected
):
  monkeypatch.setattr(dilated, *patch)
  failed = _failed(_check(layers, repeats, seed=name))
  assert failed == expected, (name, failed)


def test_a_shared_block_once_is_its_layers():
  """With one application, keeping or summing is the same: the wrong
  variant above fails only because the block repeats."""
  with jax.enable_x64(True):
    problem = problems.sample_dilated(_rng('once'), 2, 1)
    params, a, starts, mask, R = problem
    _, caches = dilated.encode(params, a, starts, mask, 1)
    right = dilated.encode_backward(params, caches, R)
    wrong = _not_summed(params, caches, R)
  for k in ('W_dil', 'b_dil'):
    np.testing.assert_array_equal(right[1][k], wrong[1][k])


def test_a_position_reads_its_sentence_only():
  """The encoder's output at a word changes with every word of its
  sentence within reach (2 sum(dilations) positions) and with no word of
  another sentence of the row nor padding."""
  layers, H, T = 3, 2, 20
  rng = np.random.default_rng(0)
  params = {
    'W_dil': jnp.asarray(rng.uniform(0.1, 1.0, (layers, H, 3 * H))),
    'b_dil': jnp.ones((layers, H)),  # every relu open
  }
  starts = np.zeros((1, T), bool)
  starts[0, [0, 16]] = True  # sentences 0-15 and 16-18, then padding
  mask = np.arange(T)[None, :] < 19
  a = jnp.asarray(rng.standard_normal((1, T, H)))

  def h_at(t, a):
    return dilated.encode(params, a, jnp.asarray(starts), mask)[0][0, t]

  reads = jax.jacobian(h_at, argnums=1)(8, a)  # [H, 1, T, H]
  touched = np.flatnonzero(np.abs(np.asarray(reads)).sum(axis=(0, 1, 3)))
  reach = 2 * sum(dilated.dilations(layers)) // 2  # 7 each side
  assert list(touched) == list(range(8 - reach, 16))
  touched = np.flatnonzero(
    np.abs(np.asarray(jax.jacobian(h_at, argnums=1)(17, a))).sum(axis=(0, 1, 3))
  )
  assert list(touched) == [16, 17, 18]
  assert dilated.context_words(3, 1, 2) == 19


@pytest.mark.slow  # ./launch.sh test -m slow (20 s: every option at once)
def test_the_dilated_model_trains_and_tags(tmp_path):
  """An ensemble of two, a shared block applied twice, characters and
  shape features, the CRF, trained by the hand-derived gradients; then
  predict tags text with the saved model."""
  corpus = write_corpus(tmp_path / 'corpus')
  workdir = tmp_path / 'run'
  result = run_entry(
    'experiments.train',
    f'--data_dir={corpus}',
    '--embeddings=random',
    '--model=dilated',
    '--nonlinearity=relu',
    '--hidden=12',
    '--epochs=2',
    '--objective=crf',
    '--features=chars,shape',
    '--grad=manual',
    '--ensemble=2',
    '--block_repeats=2',
    '--dilation_layers=2',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  saved = json.loads((workdir / 'result.json').read_text())
  assert saved['trained_on'] == 'sentences'
  predicted = run_entry(
    'experiments.predict',
    f'--model_dir={workdir}',
    '--text=John lives in Paris .',
  )
  assert predicted.returncode == 0, predicted.stderr
  tagged = [line.split('\t') for line in predicted.stdout.splitlines()[:5]]
  assert [t[0] for t in tagged] == 'John lives in Paris .'.split()


@pytest.mark.slow  # ./launch.sh test -m slow tests/test_dilated.py
def test_a_sentence_of_5000_tokens_trains_and_is_tagged(tmp_path):
  """One training sentence of 5,000 tokens: a packed row of that one
  sentence, trained and predicted (rows as long as the longest sentence)."""
  corpus = write_corpus(tmp_path / 'corpus', sentences=(40, 10, 10))
  words = ['Paris', 'is', 'big', 'and', 'John', 'went', 'there', '.']
  tags = ['B-LOC', 'O', 'O', 'O', 'B-PER', 'O', 'O', 'O']
  long = [f'{words[i % 8]} X {tags[i % 8]}' for i in range(5000)]
  with open(corpus / 'train.txt', 'a') as f:
    f.write('\n\n' + '\n'.join(long) + '\n')
  with open(corpus / 'valid.txt', 'a') as f:
    f.write('\n\n' + '\n'.join(long[:3000]) + '\n')
  workdir = tmp_path / 'run'
  result = run_entry(
    'experiments.train',
    f'--data_dir={corpus}',
    '--embeddings=random',
    '--model=dilated',
    '--hidden=8',
    '--epochs=1',
    '--batch_size=512',
    '--objective=crf',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  saved = json.loads((workdir / 'result.json').read_text())
  assert saved['row_length'] >= 5000 and saved['dev']['num_gold'] > 700
