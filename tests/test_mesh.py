"""The device mesh (research.training.parallel): configurations over 'config',
batches over 'data', on CPU devices made with JAX_NUM_CPU_DEVICES in a
subprocess.

Stated tolerance of the data axis: a data-parallel run sums each step's
gradients in another order than one device, so its parameters differ from
the one-device run's by float rounding only: here at most 1e-5 (absolute)
after 20 steps, its training losses by a relative 1e-4. The config axis
communicates nothing and is bit-identical.
"""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.conftest import entry_env
from tests.conftest import run_entry

PARAM_ATOL = 1e-5
LOSS_RTOL = 1e-4

# Runs in a subprocess with 2 CPU devices; prints one JSON line of facts.
_SCRIPT = r"""
import json, sys
import jax, numpy as np
from research.data import dataset as dataset_lib
from research.formulas import model as model_lib
from research.training import classifier, engine
from research.training import sequence
from research.formulas import objectives
from research import setup as setup_lib
from tests.conftest import fit_sentences, fit_windows

corpus = sys.argv[1]
out = {}

def fit(ds, model_cfg, cfg, spec, seeds=(0,), steps=20, sentences=False):
  init = [setup_lib.init_params(ds, model_cfg, s,
          transitions=objectives.get(cfg.objective).sentence_level)
          for s in seeds]
  S = len(seeds)
  hyper = engine.Hyper([1e-2] * S, [1e-4] * S)
  kw = dict(epochs=1, steps_per_epoch=steps, log=lambda _: None)
  cfg = cfg._replace(mesh=spec)  # the mesh travels in the config
  if sentences:
    p, _, st = fit_sentences(
      engine.stack(init), ds.windows['train'],
      sequence.sentence_lengths(ds.splits['train']), hyper, list(seeds),
      model_cfg, cfg, T=16, **kw)
  else:
    p, _, st = fit_windows(engine.stack(init), ds.windows['train'],
                              hyper, list(seeds), model_cfg, cfg, **kw)
  return jax.tree.map(np.asarray, p)

def diff(a, b):
  return max(float(np.abs(a[k] - b[k]).max()) for k in a)

ds = dataset_lib.load_dataset(corpus, embeddings='random', log=lambda _: None)
mc = model_lib.ModelConfig(hidden=8, dropout=0.3)
cfg = classifier.TrainConfig(batch_size=32)
one = fit(ds, mc, cfg, '1x1')
two = fit(ds, mc, cfg, '1x2')
out['window_data_diff'] = diff(one, two)
out['window_data_repeat'] = diff(two, fit(ds, mc, cfg, '1x2'))

sds = dataset_lib.load_dataset(corpus, embeddings='random', features=('prefix',
                       'shape'), tag_scheme='iobes', log=lambda _: None)
scfg = classifier.TrainConfig(batch_size=64, objective='crf',
                              word_dropout=0.1)
a = fit(sds, mc, scfg, '1x1', steps=None, sentences=True)
b = fit(sds, mc, scfg, '1x2', steps=None, sentences=True)
out['sentence_data_diff'] = diff(a, b)

# What the data-parallel step communicates: the rows, not the tables.
V, d = ds.L_init.shape
def collectives(sparse):
  c = cfg._replace(sparse=sparse, mesh='1x2')
  task = classifier.ClassifierTask(mc, c, objectives.get(c.objective))
  text = engine.lower(task, engine.stack([setup_lib.init_params(ds, mc, 0)]),
                      engine.Hyper([1e-2], [0.0]), [0],
                      classifier.device_data(ds.windows['train']),
                      num_examples=len(ds.windows['train'].labels)
                      ).compile().as_text()
  lines = [l for l in text.splitlines()
           if ' all-reduce(' in l or ' all-gather(' in l]
  # A table: f32[V, d] (one configuration a device runs alone) or
  # f32[S, V, d].
  table = (f'[{V},{d}]', f',{V},{d}]')
  return {'gathers': sum(' all-gather(' in l for l in lines),
          'table_reduces': sum(
              ' all-reduce(' in l and any(t in l for t in table)
              for l in lines)}
out['sparse'] = collectives(True)
out['dense'] = collectives(False)
print(json.dumps(out))
"""


def _run_on_devices(n, *args):
  env = entry_env(JAX_NUM_CPU_DEVICES=str(n))
  return subprocess.run(
    [sys.executable, *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )


@pytest.fixture(scope='module')
def facts(tmp_path_factory):
  from tests.conftest import write_corpus  # noqa: PLC0415

  corpus = write_corpus(tmp_path_factory.mktemp('mesh') / 'corpus')
  result = _run_on_devices(2, '-c', _SCRIPT, str(corpus))
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_data_axis_equals_one_device_within_tolerance(facts):
  """Window classifier with dropout (each device its rows of the global
  mask), and the sentence task (CRF, features, word dropout)."""
  assert 0.0 < facts['window_data_diff'] <= PARAM_ATOL
  assert facts['sentence_data_diff'] <= PARAM_ATOL


def test_same_seed_same_mesh_is_deterministic(facts):
  assert facts['window_data_repeat'] == 0.0


def test_data_axis_gathers_rows_and_never_reduces_a_table(facts):
  """The compiled data-parallel step all-gathers the batch's rows and has
  no all-reduce of the [V, d] table; the dense update (--nosparse) does
  reduce the table, so the check can fail."""
  assert facts['sparse']['gathers'] >= 3
  assert facts['sparse']['table_reduces'] == 0
  assert facts['dense']['table_reduces'] >= 1


def _sweep(corpus, workdir, mesh, devices, seeds='0,1,2'):
  result = _run_on_devices(
    devices,
    '-m',
    'experiments.sweep',
    f'--data_dir={corpus}',
    '--embeddings=random',
    '--hidden=8',
    '--batch_size=32',
    '--epochs=1',
    '--l2s=0,1e-3',
    f'--seeds={seeds}',
    '--objectives=xent',
    f'--mesh={mesh}',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads((workdir / 'results.json').read_text())['results']


@pytest.mark.slow  # ./launch.sh test -m slow
def test_sweep_on_four_devices(corpus, tmp_path):
  """`sweep --mesh=4x1` (6 configurations padded to 8) gives one device's
  results bit for bit; `--mesh=1x4` within the stated tolerance."""
  one = _sweep(corpus, tmp_path / 'one', '1x1', 1)
  config = _sweep(corpus, tmp_path / 'config', '4x1', 4)
  data = _sweep(corpus, tmp_path / 'data', '1x4', 4)
  assert config == one
  for a, b in zip(one, data):
    assert (a['objective'], a['l2'], a['seed']) == (
      b['objective'],
      b['l2'],
      b['seed'],
    )
    assert b['final_train_loss'] == pytest.approx(
      a['final_train_loss'], rel=LOSS_RTOL
    )


def test_one_configuration_per_device_is_one_device_bit_for_bit(
  corpus, tmp_path
):
  """`sweep --mesh=4x1` of 4 configurations: each device runs one, with
  the program of a run alone, as the one device runs each of its stack
  (on a CPU, one after another): the same numbers, bit for bit."""
  one = _sweep(corpus, tmp_path / 'one', '1x1', 1, seeds='0,1')
  config = _sweep(corpus, tmp_path / 'config', '4x1', 4, seeds='0,1')
  assert len(one) == 4 and config == one


def test_a_mesh_larger_than_the_devices_is_one_line(corpus, tmp_path):
  result = run_entry(
    'experiments.train',
    f'--data_dir={corpus}',
    '--mesh=2x2',
    f'--workdir={tmp_path / "run"}',
  )
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
    result.stderr.strip().splitlines()[0]
  ]
  assert 'needs 4 devices' in result.stderr


def _free_port():
  import socket  # noqa: PLC0415

  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.slow  # ./launch.sh test -m slow
def test_two_processes_equal_one_process_of_the_same_mesh(corpus, tmp_path):
  """jax.distributed on localhost: 2 processes of 2 CPU devices each (gloo
  collectives) run `sweep --mesh=2x2`, configurations and batches split
  across both; process 0 alone writes the results, which equal a single
  process's with 4 devices bit for bit."""
  flags = (
    '-m',
    'experiments.sweep',
    f'--data_dir={corpus}',
    '--embeddings=random',
    '--hidden=8',
    '--batch_size=32',
    '--epochs=1',
    '--l2s=0,1e-4',
    '--seeds=0,1',
    '--objectives=xent',
    '--mesh=2x2',
  )
  port = _free_port()
  env = entry_env(JAX_NUM_CPU_DEVICES='2')
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        *flags,
        f'--workdir={tmp_path / "multi"}',
        f'--coordinator=localhost:{port}',
        '--num_processes=2',
        f'--process_id={i}',
      ],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in (1, 0)
  ]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert 'wrote' not in outs[0][0]  # process 1 prints nothing of its own
  single = _run_on_devices(4, *flags, f'--workdir={tmp_path / "single"}')
  assert single.returncode == 0, single.stderr[-3000:]
  multi, one = (
    json.loads((tmp_path / d / 'results.json').read_text())['results']
    for d in ('multi', 'single')
  )
  assert multi == one
