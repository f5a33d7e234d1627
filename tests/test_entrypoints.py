"""The entry points as a user runs them: outputs, and one-line errors."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest

from research import timing
from research.errors import UserError
from research.training import parallel
from tests.conftest import REPO
from tests.conftest import run_entry
from tests.conftest import start_entry
from tests.conftest import write_corpus

TRAIN = (
  'experiments.train',
  '--embeddings=random',
  '--epochs=2',
  '--hidden=16',
  '--batch_size=32',
)


def assert_one_line_error(result, *fragments):
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr  # no traceback
  assert lines[0].startswith('error: ')
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


def test_train_writes_its_run_directory_and_predict_reads_it(corpus, tmp_path):
  workdir = tmp_path / 'run'
  t0 = time.monotonic()
  result = run_entry(*TRAIN, f'--data_dir={corpus}', f'--workdir={workdir}')
  elapsed = time.monotonic() - t0
  assert result.returncode == 0, result.stderr
  assert 'windows/s' in result.stdout and 'dev: precision' in result.stdout
  names = {p.name for p in workdir.iterdir()}
  assert {
    'flags.txt',
    'config.json',
    'metrics.jsonl',
    'result.json',
    'params.npz',
    'vocab.txt',
    'tags.txt',
  } <= names
  res = json.loads((workdir / 'result.json').read_text())
  for split in ('dev', 'test'):
    assert {'precision', 'recall', 'f1', 'accuracy'} <= res[split].keys()
  assert res['train_windows_per_sec'] > 0
  # Where the run's time went: every part measured, the parts and 'other'
  # add up to the process's wall time, which this test's clock bounds.
  wall = res['wall']
  assert set(timing.PARTS) <= wall.keys(), wall
  parts = sum(wall[p] for p in timing.PARTS)
  assert abs(parts + wall['other'] - wall['wall']) < 0.01, wall
  assert wall['other'] > -0.05 and 0 < wall['wall'] <= elapsed, (wall, elapsed)
  assert wall['train'] == pytest.approx(res['train_seconds'], abs=1e-3)
  assert 'wall ' in result.stdout and 'x the training and compiling' in (
    result.stdout
  )
  rows = [json.loads(line) for line in open(workdir / 'metrics.jsonl')]
  assert [r['epoch'] for r in rows] == [1.0, 2.0]
  assert '--hidden=16' in (workdir / 'flags.txt').read_text()

  # The flags file reproduces the run: --flagfile works.
  again = tmp_path / 'again'
  result = run_entry(
    'experiments.train', f'--flagfile={workdir}/flags.txt', f'--workdir={again}'
  )
  assert result.returncode == 0, result.stderr
  assert json.loads((again / 'result.json').read_text())['dev'] == res['dev']

  result = run_entry(
    'experiments.predict',
    f'--model_dir={workdir}',
    stdin='Anna Berg visited Kyoto last week .\n',
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines()[0].startswith('Anna\t')
  assert 'entities:' in result.stdout

  page = tmp_path / 'pages' / 'report.md'
  result = run_entry(
    'experiments.report', f'--run_dirs={workdir}', f'--output={page}'
  )
  assert result.returncode == 0, result.stderr
  text = page.read_text()
  assert '| dev | all |' in text and '![](results/run/curves.png)' in text
  assert (page.parent / 'results' / 'run' / 'curves.png').stat().st_size > 0
  assert 'results/run/flags.txt --workdir=runs/run`' in text
  # A page that report wrote is regenerated without --overwrite.
  result = run_entry(
    'experiments.report', f'--run_dirs={workdir}', f'--output={page}'
  )
  assert result.returncode == 0, result.stderr


def test_refuses_to_overwrite_an_earlier_run(corpus, tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'result.json').write_text('{"precious": true}')
  result = run_entry(*TRAIN, f'--data_dir={corpus}', f'--workdir={workdir}')
  assert_one_line_error(result, str(workdir), '--overwrite')
  assert (workdir / 'result.json').read_text() == '{"precious": true}'


def corpus_with(tmp_path, train=None, dev=None):
  """A small corpus whose train or dev file is replaced by given bytes."""
  directory = write_corpus(tmp_path / 'c', sentences=(20, 5, 5))
  if train is not None:
    (directory / 'train.txt').write_bytes(train)
  if dev is not None:
    (directory / 'valid.txt').write_bytes(dev)
  return directory


def corpus_without(directory, *names):
  for name in names:
    (directory / name).unlink()
  return directory


BAD_INPUTS = {
  'missing data dir': (lambda d: d / 'nope', ['nope', 'not found']),
  'missing dev split': (
    lambda d: (corpus_with(d) / 'valid.txt').unlink() or d / 'c',
    ['dev'],
  ),
  'empty split': (lambda d: corpus_with(d, dev=b'\n\n'), ['valid.txt']),
  'no tag column': (
    lambda d: corpus_with(d, train=b'Anna B-PER\nBerg\n'),
    ['train.txt:2'],
  ),
  'mixed column counts': (
    lambda d: corpus_with(d, train=b'Anna X B-PER\nBerg I-PER\n'),
    ['train.txt:2'],
  ),
  'undecodable bytes': (
    lambda d: corpus_with(d, train=b'Anna B-PER\n\xff\xfe O\n'),
    ['train.txt:2'],
  ),
  'tag unseen in training': (
    lambda d: corpus_with(d, dev=b'Kyoto B-GPE\n'),
    ['valid.txt:1', 'B-GPE'],
  ),
  'only a test file': (
    lambda d: corpus_without(corpus_with(d), 'train.txt', 'valid.txt'),
    ['test.txt', 'no train or dev'],
  ),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_data_gives_one_clear_line(case, tmp_path):
  make, fragments = BAD_INPUTS[case]
  data_dir = make(tmp_path)
  result = run_entry(
    *TRAIN, f'--data_dir={data_dir}', f'--workdir={tmp_path / "run"}'
  )
  assert_one_line_error(result, *fragments)
  assert not (tmp_path / 'run').exists()  # nothing half-written


@pytest.mark.parametrize(
  'flags,fragments',
  [
    (('--batch_size=100000',), ['--batch_size=100000', 'training windows']),
    (('--seeds=',), ['--seeds=', 'is empty']),
    (('--l2s=0,x',), ['--l2s=0,x', 'float']),
  ],
)
def test_bad_flag_values_give_one_clear_line(
  corpus, tmp_path, flags, fragments
):
  result = run_entry(
    'experiments.sweep',
    '--embeddings=random',
    f'--data_dir={corpus}',
    *flags,
    f'--workdir={tmp_path / "run"}',
  )
  assert_one_line_error(result, *fragments)
  assert not (tmp_path / 'run').exists()  # nothing half-written


def test_sweep_of_one_configuration(corpus, tmp_path):
  """One L2 strength and one seed: still the vmapped program (S = 1)."""
  workdir = tmp_path / 'run'
  result = run_entry(
    'experiments.sweep',
    '--embeddings=random',
    f'--data_dir={corpus}',
    '--l2s=0',
    '--seeds=0',
    '--objectives=xent',
    '--epochs=1',
    '--hidden=8',
    '--batch_size=64',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  sweep = json.loads((workdir / 'results.json').read_text())
  results = sweep['results']
  assert len(results) == 1 and 0 <= results[0]['dev']['f1'] <= 100
  assert sweep['trained_on'] == 'windows'
  assert '--workdir' not in (workdir / 'flags.txt').read_text()


@pytest.mark.slow  # ./launch.sh test -m slow
def test_sweep_of_sentence_objectives_with_document_context(corpus, tmp_path):
  """A window-level and a sentence-level objective side by side: both
  train on whole sentences; the first pass of the document feature is
  trained once, before the grid."""
  workdir = tmp_path / 'run'
  result = run_entry(
    'experiments.sweep',
    '--embeddings=random',
    f'--data_dir={corpus}',
    '--l2s=0',
    '--seeds=0',
    '--objectives=xent,crf',
    '--features=shape,document',
    '--tag_scheme=iobes',
    '--decode=viterbi',
    '--epochs=1',
    '--hidden=8',
    '--batch_size=64',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.count('first pass 1/2') == 1
  sweep = json.loads((workdir / 'results.json').read_text())
  assert sweep['trained_on'] == 'sentences' and 'first_pass' in sweep
  assert [r['objective'] for r in sweep['results']] == ['xent', 'crf']


def test_sweep_refuses_an_unknown_objective(corpus, tmp_path):
  result = run_entry(
    'experiments.sweep',
    f'--data_dir={corpus}',
    '--objectives=xent,hinge',
    f'--workdir={tmp_path / "run"}',
  )
  # A flag error is a user error like any other: one line, exit 2.
  assert_one_line_error(result, '--objectives=xent,hinge', 'xent|max_margin')
  assert not (tmp_path / 'run').exists()


def test_missing_vectors_file(corpus, tmp_path):
  result = run_entry(
    'experiments.train',
    f'--data_dir={corpus}',
    f'--embeddings={tmp_path}/vectors.txt',
    f'--workdir={tmp_path / "run"}',
  )
  assert_one_line_error(result, 'vectors.txt', '--embeddings')


def test_vectors_file_is_used(corpus, tmp_path):
  vectors = tmp_path / 'vectors.txt'
  vectors.write_text('3 4\nanna 1 0 0 0\nkyoto 0 1 0 0\nvisited 0 0 1 0\n')
  result = run_entry(
    *TRAIN[:1],
    '--epochs=1',
    '--hidden=8',
    f'--embeddings={vectors}',
    f'--data_dir={corpus}',
    f'--workdir={tmp_path / "run"}',
  )
  assert result.returncode == 0, result.stderr
  assert '3 with a pretrained vector' in result.stdout


def test_predict_without_a_model(tmp_path):
  result = run_entry(
    'experiments.predict', f'--model_dir={tmp_path}', '--text=hello'
  )
  assert_one_line_error(result, 'not a trained run directory')


def test_unknown_flag_is_one_line():
  result = run_entry('experiments.train', '--lerning_rate=3')
  assert_one_line_error(result, '--lerning_rate', 'train --help')


def test_default_data_is_shipped_with_its_licence():
  wikigold = REPO / 'data' / 'wikigold'
  assert (wikigold / 'wikigold.conll.txt').stat().st_size > 300_000
  assert 'CC-BY 4.0' in (wikigold / 'LICENSE').read_text()
  readme = (REPO / 'README.md').read_text()
  assert 'Balasuriya' in readme  # the citation


def test_readme_quickstart_is_the_two_commands():
  readme = (REPO / 'README.md').read_text()
  assert '```\n./launch.sh\n./launch.sh test\n```' in readme
  assert (
    pathlib.Path(REPO / '.ci' / 'run').read_text().count('launch.sh test') == 1
  )


@pytest.mark.slow  # ./launch.sh test -m slow
def test_bench_measures_every_row_it_reports(corpus, tmp_path):
  vectors = tmp_path / 'vectors.txt'  # 'pretrained' vocabulary: 6 more words
  words = [
    'anna',
    'kyoto',
    'visited',
    'zebra',
    'quartz',
    'fjord',
    'lynx',
    'oboe',
    'wharf',
  ]
  vectors.write_text(''.join(f'{w} {i} 1 0 0\n' for i, w in enumerate(words)))
  workdir = tmp_path / 'bench'
  result = run_entry(
    'experiments.bench',
    f'--data_dir={corpus}',
    f'--embeddings={vectors}',
    '--hidden=8',
    '--batch_sizes=16,256',
    '--bench_steps=2',
    '--repeats=1',
    '--sweep_configs=2',
    '--peak_seconds=0.02',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  out = json.loads((workdir / 'bench.json').read_text())
  runs = {(r['vocab'], r['batch_size']): r for r in out['runs']}
  assert set(runs) == {('data', 16), ('data', 256), ('pretrained', 256)}
  assert runs['pretrained', 256]['vocab_size'] > runs['data', 256]['vocab_size']
  for r in out['runs']:
    assert r['windows_per_sec'] > 0
    # 3 x forward: D = 5 words x (4 vector + 5 casing), H = 8, C = 6 tags
    # (O, B-LOC, B-ORG, B-PER, I-ORG, I-PER).
    assert r['flops_per_window'] == 3 * 2 * (5 * (4 + 5) * 8 + 8 * 6)
  for B in (16, 256):
    assert runs['data', B]['matmuls_only_windows_per_sec'] > 0
  assert runs['data', 256]['naive_windows_per_sec'] > 0
  assert runs['data', 256]['xla_defaults_windows_per_sec'] > 0
  assert runs['data', 256]['plain_rows_windows_per_sec'] > 0
  assert out['sweep']['configs'] == 2 and out['sweep']['train_ratio'] > 0
  assert 0 < out['sweep']['least_ratio_at_matmul_peak']
  assert out['matmul_peak_gflops'] == max(
    g
    for by_size in out['matmul_gflops_by_size'].values()
    for g in by_size.values()
  )
  assert {'bench.md', 'throughput.png', 'flags.txt'} <= {
    p.name for p in workdir.iterdir()
  }
  assert 'matmuls alone' in (workdir / 'bench.md').read_text()

  page = tmp_path / 'report.md'
  page.write_text('an earlier page')
  result = run_entry(
    'experiments.report', f'--run_dirs={workdir}', f'--output={page}'
  )
  assert_one_line_error(result, str(page), '--overwrite')
  assert page.read_text() == 'an earlier page'
  result = run_entry(
    'experiments.report',
    f'--run_dirs={workdir}',
    f'--output={page}',
    '--overwrite',
  )
  assert result.returncode == 0, result.stderr
  assert '![](results/bench/throughput.png)' in page.read_text()


# --- The command line: --help, flags each entry point takes, exit codes. ---


def test_help_lists_the_flags_an_entry_point_takes():
  """The shared flags are defined once (experiments/_flags.py), yet each
  entry point's --help lists those it reads, with their defaults, and no
  other."""
  result = run_entry('experiments.train', '--help')
  assert result.returncode == 0, result.stderr
  for flag in ('data_dir', 'lr', 'epochs', 'window', 'hidden', 'objective'):
    assert f'  --{flag}:' in result.stdout, flag
  assert "(default: '0.001')" in result.stdout  # --lr's
  result = run_entry('experiments.evaluate', '--help')
  assert result.returncode == 0, result.stderr
  assert '  --[no]overwrite:' in result.stdout
  assert '  --split:' in result.stdout
  assert '--lr:' not in result.stdout and '--hidden:' not in result.stdout


SMALL_SWEEP = ('--seeds=0', '--objectives=xent')


@pytest.mark.parametrize(
  'entry,flag,fragments',
  [
    ('sweep', '--l2s=0,-1', ['--l2s=0,-1', 'non-negative']),
    ('train', '--l2=-1', ['--l2=-1', 'non-negative']),
    ('sweep', '--eval_every=5', ['--eval_every', 'sweep does not take it']),
  ],
)
def test_flags_are_checked_alike_in_every_entry_point(
  corpus, tmp_path, entry, flag, fragments
):
  """A list flag's items have the bounds of the scalar flag (--l2s, --l2);
  a shared flag an entry point does not use is refused, not ignored."""
  result = run_entry(
    f'experiments.{entry}',
    '--embeddings=random',
    f'--data_dir={corpus}',
    '--epochs=1',
    '--hidden=8',
    *(SMALL_SWEEP if entry == 'sweep' else ()),
    flag,
    f'--workdir={tmp_path / "run"}',
  )
  assert_one_line_error(result, *fragments)
  assert not (tmp_path / 'run').exists()


def test_launch_help_lists_the_entry_points_without_a_venv(tmp_path):
  """./launch.sh --help (and -h) is answered before .venv is set up."""
  shutil.copy(REPO / 'launch.sh', tmp_path / 'launch.sh')
  shutil.copytree(REPO / 'experiments', tmp_path / 'experiments')
  env = dict(os.environ, PYTHON='false')  # setting up .venv would fail
  for arg in ('--help', '-h'):
    result = subprocess.run(
      ['bash', str(tmp_path / 'launch.sh'), arg],
      capture_output=True,
      text=True,
      env=env,
      timeout=60,
      check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in ('train', 'sweep', 'evaluate', 'predict', 'report'):
      first = (REPO / 'experiments' / f'{name}.py').read_text().splitlines()[0]
      description = first.removeprefix('r"""')
      assert any(
        line.split() and line.split()[0] == name and description in line
        for line in lines
      ), (name, result.stdout)
    assert not (tmp_path / '.venv').exists()


def test_library_errors_name_parameters_not_flags():
  """research/ says `mesh=4y`; the entry point says --mesh=4y."""
  with pytest.raises(UserError) as info:
    parallel.parse('4y')
  assert '`mesh=4y`' in str(info.value) and '--' not in str(info.value)
  result = run_entry('experiments.train', '--mesh=4y')
  assert_one_line_error(result, '--mesh=4y:', 'e.g. --mesh=4x1')


# --- --overwrite never leaves the old model beside a new run. -------------


def finished_run(directory):
  """A directory holding what a finished train run leaves."""
  directory.mkdir(parents=True)
  (directory / 'flags.txt').write_text('# ./launch.sh train\n--hidden=16\n')
  for name in ('params.npz', 'vocab.txt', 'pretrained_words.txt', 'tags.txt'):
    (directory / name).write_text('old')
  for name in ('config.json', 'result.json'):
    (directory / name).write_text('{"old": true}')
  return directory


def assert_no_old_model(workdir):
  """The old run is gone from workdir (moved into .previous-run-1/), and
  predict says in one line that there is no model there."""
  names = {p.name for p in workdir.iterdir()}
  assert not names & {'params.npz', 'result.json', 'config.json'}, names
  assert (workdir / '.previous-run-1' / 'params.npz').read_text() == 'old'
  result = run_entry(
    'experiments.predict', f'--model_dir={workdir}', '--text=Anna visited'
  )
  assert_one_line_error(result, 'not a trained run directory', 'params.npz')


def test_a_diverged_overwrite_leaves_no_old_model(corpus, tmp_path):
  workdir = finished_run(tmp_path / 'run')
  result = run_entry(
    *TRAIN[:1],
    '--embeddings=random',
    '--hidden=8',
    f'--data_dir={corpus}',
    f'--workdir={workdir}',
    '--overwrite',
    '--optimizer=sgd',
    '--lr=1e30',
    '--epochs=1',
  )
  assert_one_line_error(result, 'diverged', 'no parameters were written')
  assert_no_old_model(workdir)


def test_an_interrupted_overwrite_leaves_no_old_model(corpus, tmp_path):
  """sweep --overwrite into a train run's directory, Ctrl-C'd once it
  prints its first progress line: exit 130, and what --resume would do."""
  workdir = finished_run(tmp_path / 'run')
  proc = start_entry(
    'experiments.sweep',
    '--embeddings=random',
    f'--data_dir={corpus}',
    '--hidden=8',
    '--epochs=50',
    '--seeds=0',
    '--l2s=0',
    '--objectives=xent',
    f'--workdir={workdir}',
    '--overwrite',
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
  )
  try:
    assert proc.stdout.readline(), 'the run ended before printing a line'
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 130, stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('interrupted'), stderr
  assert str(workdir) in lines[0] and '--resume' in lines[0]
  assert_no_old_model(workdir)


def test_a_mistyped_flag_is_answered_with_the_closest(tmp_path):
  result = run_entry('experiments.train', '--hiden=8')
  assert_one_line_error(result, '--hiden', 'did you mean --hidden?')
