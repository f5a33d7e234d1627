"""The divergence guard (optim.apply_gradients, driver.drive): a step whose
loss or update is not finite (or whose loss passes engine.MAX_LOSS) changes
nothing; a single run stops with one line, a sweep's other configurations
finish as if nothing happened."""

import json

import numpy as np
import pytest

from research import setup as setup_lib
from research.data import dataset as dataset_lib
from research.formulas import model as model_lib
from research.training import classifier
from research.training import divergence
from research.training import engine
from tests.conftest import assert_same_numbers
from tests.conftest import fit_windows
from tests.conftest import run_entry
from tests.test_entrypoints import assert_one_line_error


@pytest.fixture
def small(corpus):
  ds = dataset_lib.load_dataset(corpus, embeddings='random', log=lambda _: None)
  return ds, model_lib.ModelConfig(hidden=8)


def _fit(ds, model_cfg, l2s, optimizer='adam', **kw):
  init = [setup_lib.init_params(ds, model_cfg, s) for s in range(len(l2s))]
  return fit_windows(
    engine.stack(init),
    ds.windows['train'],
    engine.Hyper([1e-2] * len(l2s), l2s),
    list(range(len(l2s))),
    model_cfg,
    classifier.TrainConfig(batch_size=16, optimizer=optimizer),
    epochs=2,
    log=lambda _: None,
    **kw,
  )


@pytest.mark.parametrize('optimizer', ['sgd', 'adam'])
def test_a_diverged_configuration_stops_and_the_others_are_untouched(
  small, optimizer, stack_mode
):
  """L2 = NaN makes configuration 1's first gradient NaN: it keeps its
  initial parameters and is reported diverged at step 1, while
  configuration 0 ends as in the same sweep without the injected
  divergence: bit for bit on a CPU, either way the stack runs; elsewhere to
  float rounding (`assert_same_numbers`)."""
  ds, model_cfg = small
  init_1 = setup_lib.init_params(ds, model_cfg, 1)
  bad, _, bad_stats = _fit(ds, model_cfg, [0.0, np.nan], optimizer)
  good, _, good_stats = _fit(ds, model_cfg, [0.0, 1e-4], optimizer)
  assert bad_stats['diverged_at'] == [None, 1]
  assert good_stats['diverged_at'] == [None, None]
  for k in bad:
    assert_same_numbers(bad[k][0], good[k][0])
    np.testing.assert_array_equal(np.asarray(bad[k][1]), init_1[k])


def test_a_single_run_raises_on_divergence(small):
  ds, model_cfg = small
  with pytest.raises(divergence.Diverged, match='diverged at step 1'):
    _fit(ds, model_cfg, [np.nan])


def test_train_with_a_huge_learning_rate_exits_with_one_line(corpus, tmp_path):
  """SGD at lr 1e30: the second step's loss passes MAX_LOSS; the run says
  so in one line, exits non-zero, and writes no parameters."""
  workdir = tmp_path / 'run'
  result = run_entry(
    'experiments.train',
    f'--data_dir={corpus}',
    '--embeddings=random',
    '--optimizer=sgd',
    '--lr=1e30',
    '--hidden=8',
    '--epochs=2',
    '--batch_size=32',
    f'--workdir={workdir}',
  )
  assert_one_line_error(result, 'diverged at step 2', 'smaller --lr')
  assert not (workdir / 'params.npz').exists()
  assert not (workdir / 'result.json').exists()


def test_a_sweep_reports_a_diverged_configuration(corpus, tmp_path):
  """The sweep's table and results.json say which cell diverged; the best
  L2 is chosen among the others."""
  workdir = tmp_path / 'run'
  result = run_entry(
    'experiments.sweep',
    f'--data_dir={corpus}',
    '--embeddings=random',
    '--optimizer=sgd',
    '--lr=1e-5',
    '--l2s=0,1e12',
    '--seeds=0',
    '--objectives=xent',
    '--hidden=8',
    '--epochs=1',
    '--batch_size=32',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  sweep = json.loads((workdir / 'results.json').read_text())
  by_l2 = {r['l2']: r for r in sweep['results']}
  assert by_l2[0.0]['diverged_at_step'] is None
  assert by_l2[1e12]['diverged_at_step'] is not None
  assert sweep['best_l2'] == {'xent': 0.0}
  assert 'diverged (1 of 1 seeds' in (workdir / 'report.md').read_text()
