"""Tests for research.studies.vectorization and its entry point.

Timings are never asserted: the versions must agree on the scores, and the
timing helpers must measure what they say.
"""

import json

import jax
import numpy as np
import pytest

from research.formulas import model as model_lib
from research.studies import vectorization
from tests.conftest import run_entry


def test_deck_loop_and_matrix_agree():
  W, vectors, M = vectorization.deck_inputs(4, 7, 9)
  versions = vectorization.deck_versions(W, vectors)
  ref = W @ M
  for name, (_, _, scores, _) in versions.items():
    np.testing.assert_allclose(
      scores(), ref, rtol=1e-5, atol=1e-5, err_msg=name
    )
  diffs = vectorization.check_same(versions, rtol=1e-5, atol=1e-5)
  assert set(diffs) == set(versions)


@pytest.mark.parametrize('model', ['hidden', 'softmax'])
def test_window_model_loop_and_matrix_agree(model):
  """Every version's scores equal the reference's to rtol 1e-5, with full
  float32 matrix products (a GPU's default TF32 differs by 1e-3)."""
  with jax.default_matmul_precision('float32'):
    _loop_and_matrix_agree(model)


def _loop_and_matrix_agree(model):
  cfg = model_lib.ModelConfig(model=model, window=1, hidden=6)
  params, words, casing = vectorization.model_inputs(
    cfg, 13, vocab_size=50, num_classes=4, embed_dim=3
  )
  ref = np.asarray(vectorization.model_scores(params, words, casing, cfg))
  assert ref.shape == (13, 4) and np.abs(ref).max() > 0
  versions = vectorization.model_versions(params, words, casing, cfg)
  for name, (_, _, scores, _) in versions.items():
    np.testing.assert_allclose(
      scores(), ref, rtol=1e-5, atol=1e-6, err_msg=name
    )


def test_timeit_interleaves_and_reports_loops_and_repeats():
  calls = []
  fns = {'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')}
  t = vectorization.timeit(fns, repeats=3, min_seconds=0.0)
  assert set(t) == {'a', 'b'}
  for row in t.values():
    assert row['loops'] == 1 and row['repeats'] == 3
    assert 0 <= row['best_s'] <= row['median_s']
  # Warm-up and sizing per fn, then rounds that measure each fn once.
  assert calls == ['a', 'a', 'b', 'b'] + ['a', 'b'] * 3
  assert vectorization.fmt_time(639e-6) == '639 µs'
  assert vectorization.fmt_time(1.5) == '1.5 s'


@pytest.mark.slow  # ./launch.sh test -m slow
def test_entry_point_writes_its_results_and_report(corpus, tmp_path):
  workdir = tmp_path / 'lvm'
  result = run_entry(
    'experiments.loop_vs_matrix',
    '--deck_classes=3',
    '--deck_dim=8',
    '--deck_vectors=10',
    '--model_windows=5',
    f'--data_dir={corpus}',
    '--embeddings=random',
    '--hidden=8',
    '--embed_dim=4',
    '--timing_repeats=1',
    '--timing_min_seconds=0',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  for name in ('flags.txt', 'results.json', 'report.md'):
    assert (workdir / name).is_file(), name
  results = json.loads((workdir / 'results.json').read_text())
  names = [r['version'] for r in results['deck']['rows']]
  assert names == [r['version'] for r in results['model']['rows']]
  assert results['model']['windows'] == 5  # capped: the dev split has more
  assert 'numpy loop' in names and 'jax matrix' in names
  assert 'best of 1' in result.stdout
  assert '## Summary' in (workdir / 'report.md').read_text()
