"""Tests for research.scorer and experiments.window_margin, on inline data."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.data import conll as data
from research.data import vocab as vocab_lib
from research.errors import UserError
from research.evaluation import metrics
from research.formulas import losses
from research.formulas import model as model_lib
from research.training import engine
from research.training import window_scorer as scorer

REPO = pathlib.Path(__file__).resolve().parents[1]

LOCS = ('Paris', 'Rome', 'Berlin', 'Oslo', 'Lima', 'Cairo')
PERS = ('Anna', 'Bob', 'Carl', 'Dora', 'Emil', 'Fay')
FILLERS = ('we', 'they', 'often', 'went', 'again', 'today', 'then', 'soon')


def toy_sentences(n, seed):
  """'... in LOC ...' (LOC tagged) and '... with PER ...' (PER tagged)."""
  rng = np.random.default_rng(seed)
  sentences = []
  for i in range(n):
    a, b = rng.choice(FILLERS, 2)
    if i % 2:
      tokens, tags = (a, 'in', rng.choice(LOCS), b), ('O', 'O', 'B-LOC', 'O')
    else:
      tokens, tags = (a, 'with', rng.choice(PERS), b), ('O', 'O', 'B-PER', 'O')
    sentences.append(data.Sentence(tuple(map(str, tokens)), tags))
  return sentences


def toy_windows(k=1):
  train, dev = toy_sentences(200, 0), toy_sentences(60, 1)
  tags = data.check_tags({'train': train, 'dev': dev})
  vocab = vocab_lib.Vocab.build(train)
  return (
    vocab_lib.make_windows(train, vocab, tags, k),
    vocab_lib.make_windows(dev, vocab, tags, k),
    vocab,
    tags,
  )


def train_data(windows, tags, vocab_size, entity_type='LOC'):
  gold = scorer.entity_labels(windows.labels, tags, entity_type)
  return jax.tree.map(
    jnp.asarray,
    scorer.TrainData(
      windows.words,
      windows.casing,
      gold.astype(np.float32),
      np.flatnonzero(gold).astype(np.int32),
      np.flatnonzero(~gold).astype(np.int32),
      scorer.casing_of_words(windows.words, windows.casing, vocab_size),
    ),
  )


def test_entity_labels_any_prefix_and_unknown_type():
  tags = ['O', 'B-LOC', 'I-LOC', 'S-LOC', 'B-PER', 'B-LOCATION']
  np.testing.assert_array_equal(
    scorer.entity_labels(np.arange(6), tags, 'LOC'),
    [False, True, True, True, False, False],
  )
  with pytest.raises(UserError, match='ORG'):
    scorer.entity_labels(np.arange(6), tags, 'ORG')


def test_casing_of_words():
  words = np.array([[0, 3, 4], [3, 4, 1], [0, 3, 1], [0, 5, 1]])
  casing = np.array([[0, 3, 1], [1, 1, 0], [0, 3, 0], [0, 2, 0]])
  table = scorer.casing_of_words(words, casing, 7)
  # Centers: word 3 twice 'title' (3); 4 once 'lower';
  # 5 once 'upper'; 6 never: 'lower'. Specials get 0.
  np.testing.assert_array_equal(table, [0, 0, 0, 3, 1, 2, scorer.LOWER])


@pytest.mark.parametrize('use_table', [True, False])
def test_corrupt_changes_only_center_and_is_deterministic(use_table):
  train, _, vocab, _ = toy_windows(k=2)
  V = len(vocab)
  table = jnp.arange(V, dtype=jnp.int32) % 7 + 1 if use_table else None
  words, casing = jnp.asarray(train.words[:50]), jnp.asarray(train.casing[:50])
  key = jax.random.key(3)
  w1, c1 = scorer.corrupt_windows(key, words, casing, 4, V, table)
  w2, c2 = scorer.corrupt_windows(key, words, casing, 4, V, table)
  w3, _ = scorer.corrupt_windows(jax.random.key(4), words, casing, 4, V, table)
  assert w1.shape == c1.shape == (50, 4, 5)
  np.testing.assert_array_equal(w1, w2)
  np.testing.assert_array_equal(c1, c2)
  assert not np.array_equal(w1, w3)
  off_center = [0, 1, 3, 4]
  np.testing.assert_array_equal(
    w1[:, :, off_center],
    np.broadcast_to(words[:, None, off_center], (50, 4, 4)),
  )
  np.testing.assert_array_equal(
    c1[:, :, off_center],
    np.broadcast_to(casing[:, None, off_center], (50, 4, 4)),
  )
  center = np.asarray(w1[:, :, 2])
  assert center.min() >= scorer.FIRST_WORD and center.max() < V
  assert len(np.unique(center)) > V // 2  # spread over the vocabulary
  if use_table:
    np.testing.assert_array_equal(c1[:, :, 2], np.asarray(table)[center])
  else:
    np.testing.assert_array_equal(
      c1[:, :, 2], np.broadcast_to(casing[:, None, 2], (50, 4))
    )


def test_window_margin_and_active_fraction_by_hand():
  s_N = jnp.array([2.0, 0.5, -1.0])
  s_c_NxM = jnp.array([[0.5, 1.5], [0.0, -1.0], [0.2, -3.0]])
  # Hinges 1 - s + s_c: [[-0.5, 0.5], [0.5, -0.5], [2.2, -1.0]].
  with jax.numpy_rank_promotion('raise'):
    np.testing.assert_allclose(
      scorer.hinge_terms(s_N, s_c_NxM),
      [[-0.5, 0.5], [0.5, -0.5], [2.2, -1.0]],
      rtol=1e-6,
    )
    np.testing.assert_allclose(
      losses.window_margin(s_N, s_c_NxM), [0.5, 0.5, 2.2], rtol=1e-6
    )
    assert float(scorer.active_fraction(s_N, s_c_NxM)) == pytest.approx(0.5)
  # A hinge exactly at 0 has no gradient: not active.
  assert (
    float(scorer.active_fraction(jnp.array([1.0]), jnp.array([[0.0, 0.5]])))
    == 0.5
  )


def test_margin_losses_match_hand_computation():
  # k=1, d=2, one casing column, 3 hidden units: D = 3 * (2 + 1) = 9.
  rng = np.random.default_rng(0)
  p = {
    'L': rng.normal(size=(6, 2)),
    'L_case': rng.normal(size=(3, 1)),
    'W': rng.normal(size=(3, 9)) / 3,
    'b': np.array([0.1, -0.2, 0.3]),
    'U': rng.normal(size=3),
  }
  params = {k: jnp.asarray(v, jnp.float32) for k, v in p.items()}

  def s_hand(words, casing):
    x = np.concatenate(
      [
        np.concatenate([p['L'][w], p['L_case'][c]])
        for w, c in zip(words, casing)
      ]
    )
    return p['U'] @ np.tanh(p['W'] @ x + p['b'])

  words = jnp.array([[0, 3, 4], [5, 4, 1]])
  casing = jnp.array([[0, 1, 2], [2, 1, 0]])
  neg_words = jnp.array([[[0, 5, 4], [0, 2, 4]], [[5, 3, 1], [5, 5, 1]]])
  neg_casing = jnp.array([[[0, 2, 2], [0, 1, 2]], [[2, 1, 0], [2, 2, 0]]])
  J_B, active = jax.jit(scorer.margin_losses)(
    params, words, casing, neg_words, neg_casing
  )
  hinges = np.array(
    [
      [
        1
        - s_hand(words[i], casing[i])
        + s_hand(neg_words[i, m], neg_casing[i, m])
        for m in range(2)
      ]
      for i in range(2)
    ]
  )
  np.testing.assert_allclose(J_B, np.maximum(hinges, 0).sum(1), rtol=1e-5)
  assert float(active) == pytest.approx((hinges > 0).mean())
  s = np.array([s_hand(words[i], casing[i]) for i in range(2)])
  y = np.array([1.0, 0.0])
  np.testing.assert_allclose(
    losses.logistic_loss(jnp.asarray(s, jnp.float32), jnp.asarray(y)),
    -np.log(np.where(y == 1, 1 / (1 + np.exp(-s)), 1 - 1 / (1 + np.exp(-s)))),
    rtol=1e-5,
  )


@pytest.mark.parametrize(
  'objective,negatives', [('margin', 'corrupt'), ('logistic', 'corrupt')]
)
def test_training_on_a_separable_toy_task(objective, negatives):
  train, dev, vocab, tags = toy_windows(k=1)
  mcfg = model_lib.ModelConfig(model='scorer', window=1, hidden=16)
  params = model_lib.init_params(
    jax.random.key(0), mcfg, vocab_size=len(vocab), num_classes=1, embed_dim=8
  )
  cfg = scorer.ScorerConfig(
    objective=objective, negatives=negatives, num_corrupt=3, batch_size=32
  )
  stacked, history, stats = scorer.fit(
    engine.stack([params]),
    train_data(train, tags, len(vocab)),
    engine.Hyper([1e-2], [0.0]),
    [0],
    cfg,
    num_steps=100,
    eval_every=50,
    evaluate=lambda p: {},
    log=lambda line: None,
  )
  params = engine.unstack(stacked, 0)
  per_step = {k: v[0] for k, v in stats['per_step'].items()}
  assert [h['step'] for h in history] == [0, 50, 100]
  assert stats['steps'] == 100 and len(per_step['loss']) == 100
  gold = scorer.entity_labels(dev.labels, tags, 'LOC')
  chance = 200 * gold.mean() / (1 + gold.mean())  # F1 of "all positive"
  r = metrics.detection_scores(
    scorer.predict_scores(params, dev.words, dev.casing), gold
  )
  if objective == 'logistic':
    assert r['f1'] > 90 > chance + 50
  else:
    # The margin only orders windows; its scale is not tied to s = 0.
    assert r['best_f1'] > 90 and r['ap'] > 90
    assert per_step['active'][-10:].mean() < per_step['active'][:10].mean()


CONLL_TRAIN = """\
-DOCSTART- O

we O
went O
to O
Paris B-LOC
today O

Anna B-PER
lives O
in O
Rome B-LOC

the O
bank B-ORG
of I-ORG
Oslo I-ORG
"""

CONLL_DEV = """\
they O
flew O
to O
Berlin B-LOC

Bob B-PER
stayed O
in O
Paris B-LOC
"""


@pytest.mark.slow  # ./launch.sh test -m slow
def test_entry_point_end_to_end(tmp_path):
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  (data_dir / 'train.txt').write_text(CONLL_TRAIN * 6)
  (data_dir / 'valid.txt').write_text(CONLL_DEV)
  (data_dir / 'test.txt').write_text(CONLL_DEV)
  workdir = tmp_path / 'run'
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO))
  proc = subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.window_margin',
      f'--data_dir={data_dir}',
      f'--workdir={workdir}',
      '--epochs=1',
      '--embeddings=random',
      '--hidden=8',
      '--batch_size=16',
      '--negatives=corrupt,corrupt+real',
      '--num_corrupt=2',
      '--seeds=3',
      '--entity_type=LOC',
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in (
    'flags.txt',
    'results.json',
    'results.csv',
    'report.md',
    'active_hinges.png',
    'dev_f1.png',
  ):
    assert (workdir / name).is_file(), name
  results = json.loads((workdir / 'results.json').read_text())
  labels = [(r['label'], r['seed']) for r in results['runs']]
  assert labels == [
    ('margin (corrupt)', 3),
    ('margin (corrupt+real)', 3),
    ('logistic', 3),
  ]
  assert all('test' in r and 'dev_hinge_corrupt' in r for r in results['runs'])
  report = (workdir / 'report.md').read_text()
  assert '![](active_hinges.png)' in report
  assert '| margin (corrupt) |' in report and '| logistic |' in report
  assert 'windows/s' in proc.stdout
  assert len((workdir / 'results.csv').read_text().splitlines()) == 4
