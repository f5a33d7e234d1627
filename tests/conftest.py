"""Shared fixtures: a small synthetic CoNLL corpus that a model can learn.

Sentences come from templates with slots for people, places and
organizations, so entity types are predictable from the words and their
context; dev and test reuse the names in other templates.
"""

import os
import pathlib
import signal
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# The entry points the tests launch compile the same small programs again
# and again: a compilation cache shared by this test run's processes
# (xdist workers included) compiles each once. What runs is unchanged.
_RUN = os.environ.get('PYTEST_XDIST_TESTRUNUID', str(os.getpid()))
os.environ.setdefault(
  'JAX_COMPILATION_CACHE_DIR',
  os.path.join(tempfile.gettempdir(), f'words-tests-jax-cache-{_RUN}'),
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
# Likewise the entry points' loaded datasets (--data_cache), kept apart from
# the user's.
os.environ.setdefault(
  'NER_DATA_CACHE',
  os.path.join(tempfile.gettempdir(), f'words-tests-data-cache-{_RUN}'),
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

PEOPLE = [
  ('Anna', 'Berg'),
  ('Tomas', 'Holm'),
  ('Lena', 'Ortiz'),
  ('Marco', 'Vidal'),
  ('Ines', 'Park'),
  ('Olaf', 'Reyes'),
]
PLACES = ['Lisbon', 'Kyoto', 'Quito', 'Tallinn', 'Accra', 'Perth']
ORGS = [
  ('Nordbank',),
  ('Vela', 'Motors'),
  ('Orion', 'Press'),
  ('Delta', 'Farms'),
]
TEMPLATES = [
  'PER visited LOC last week .',
  'PER works for ORG in LOC .',
  'ORG opened an office in LOC .',
  'the mayor of LOC met PER .',
  'PER and PER founded ORG .',
  'shares of ORG fell on Monday .',
]


def _fill(template, rng, scheme):
  tokens, tags = [], []
  for slot in template.split():
    if slot in ('PER', 'LOC', 'ORG'):
      if slot == 'PER':
        words = PEOPLE[rng.integers(len(PEOPLE))]
      elif slot == 'LOC':
        words = (PLACES[rng.integers(len(PLACES))],)
      else:
        words = ORGS[rng.integers(len(ORGS))]
      for i, w in enumerate(words):
        first = i == 0 and (scheme == 'iob2' or (tags and tags[-1][2:] == slot))
        tokens.append(w)
        tags.append(('B-' if first else 'I-') + slot)
    else:
      tokens.append(slot)
      tags.append('O')
  return tokens, tags


def write_corpus(
  directory,
  sentences=(120, 30, 30),
  scheme='iob2',
  seed=0,
  names=('train.txt', 'valid.txt', 'test.txt'),
):
  """Writes train/dev/test files of templated sentences; returns the dir."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for name, count in zip(names, sentences):
    lines = ['-DOCSTART- -X- O', '']
    for _ in range(count):
      tokens, tags = _fill(TEMPLATES[rng.integers(len(TEMPLATES))], rng, scheme)
      lines += [f'{t} X {g}' for t, g in zip(tokens, tags)] + ['']
    (directory / name).write_text('\n'.join(lines))
  return directory


@pytest.fixture
def corpus(tmp_path):
  return write_corpus(tmp_path / 'corpus')


def entry_env(**extra):
  """The environment the tests run the entry points in (plus `extra`)."""
  return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', **extra)


def run_entry(*args, stdin=None, timeout=300):
  """Runs `python -m experiments.<args>` as a user would; returns the result."""
  env = entry_env()
  return subprocess.run(
    [sys.executable, '-m', *args],
    cwd=REPO,
    env=env,
    input=stdin,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


def start_entry(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
  """Starts `python -m experiments.<args>` as a user would, without
  waiting; Ctrl-C (SIGINT) reaches it as KeyboardInterrupt, as in a shell
  (a child starts with SIGINT ignored unless it is reset)."""
  return subprocess.Popen(
    [sys.executable, '-m', *args],
    cwd=REPO,
    env=entry_env(),
    stdout=stdout,
    stderr=stderr,
    text=True,
    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
  )


@pytest.fixture(params=['map', 'vmap'])
def stack_mode(request, monkeypatch):
  """Runs a test with each way a stack of configurations can run
  (research.training.engine.stack_mode): 'map', a CPU's, and 'vmap', a GPU's or
  TPU's, forced here so that CI runs the accelerators' code path too."""
  monkeypatch.setenv('NER_STACK_MODE', request.param)
  return request.param


def bit_identical_backend():
  """Whether equal programs on equal data give equal bits here: on a CPU;
  on a GPU the scatter-adds of the sparse row updates and of every
  gather's gradient use atomics, whose order varies from run to run."""
  return jax.default_backend() == 'cpu'


def assert_same_numbers(got, want, atol=1e-4):
  """Two trainings' arrays: equal bits where `bit_identical_backend`;
  elsewhere within atol (a GPU's atomic scatter-adds round differently from
  run to run, and Adam, dividing by the root of a tiny second moment, can
  grow such a rounding towards the size of a step; measured on an H200: up
  to 1.3e-5 after two epochs at lr 1e-2)."""
  if bit_identical_backend():
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  else:
    np.testing.assert_allclose(
      np.asarray(got), np.asarray(want), rtol=0, atol=atol
    )


def fit_windows(params, windows, hyper, seeds, model_cfg, cfg, *, epochs, **kw):
  """The window task of `windows` (a vocab.Windows) trained by the loop
  driver every run uses (driver.fit_task): stacked params, [S] hyper, S
  seeds; kw are fit_task's. Returns (params, history, stats)."""
  from research.formulas import objectives  # noqa: PLC0415
  from research.training import classifier  # noqa: PLC0415
  from research.training import driver  # noqa: PLC0415

  objective = objectives.get(cfg.objective, 'window')
  fitted = driver.fit_task(
    classifier.ClassifierTask(model_cfg, cfg, objective),
    params,
    hyper,
    seeds,
    classifier.device_data(windows),
    num_examples=len(windows.labels),
    epochs=epochs,
    **kw,
  )
  return fitted.params, fitted.history, fitted.stats


def fit_sentences(
  params, windows, lengths, hyper, seeds, model_cfg, cfg, *, epochs, T=None,
  **kw,
):  # fmt: skip
  """`fit_windows` of the sentence task: the windows of sentences of
  `lengths` words packed into rows of T positions (default:
  sequence.row_length); stats with the task's."""
  from research.formulas import objectives  # noqa: PLC0415
  from research.training import driver  # noqa: PLC0415
  from research.training import sequence  # noqa: PLC0415

  objective = objectives.get(cfg.objective)
  task, data, rows, task_stats = sequence.task_and_data(
    windows, lengths, model_cfg, cfg, objective, T
  )
  fitted = driver.fit_task(
    task, params, hyper, seeds, data, num_examples=rows, epochs=epochs, **kw
  )
  return fitted.params, fitted.history, dict(fitted.stats, **task_stats)


def by_name(case):
  """A gradient-check case (research.formulas.derivations) that takes its
  objective by name, looked up in the registry when it is called, so that
  a test's patch of the registry (a wrong derivation) is the one read."""

  def call(*args, objective, **kw):
    from research.formulas import objectives  # noqa: PLC0415

    return case(*args, objective=objectives.get(objective), **kw)

  return call
