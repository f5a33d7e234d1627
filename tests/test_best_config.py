"""The best configuration's flag file, end to end as a user runs it, and the
ablation's rows."""

import json

import pytest

from research.studies import ablation
from tests.conftest import REPO
from tests.conftest import run_entry
from tests.test_entrypoints import assert_one_line_error

BEST = REPO / 'experiments' / 'configs' / 'conll_best.flags'
# Flags after --flagfile replace its values: a small, fast version of it.
SMALL = ('--embeddings=random', '--epochs=2', '--hidden=16', '--batch_size=256')


def test_best_flags_train_and_the_saved_model_agree(corpus, tmp_path):
  workdir = tmp_path / 'best'
  lists = tmp_path / 'lists.txt'
  lists.write_text("# a user's lists\nLOC\tKyoto\nORG\tAcme Corp\n")
  result = run_entry(
    'experiments.train',
    f'--flagfile={BEST}',
    *SMALL,
    f'--gazetteer={lists}',
    f'--data_dir={corpus}',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  assert 'first pass 2/2' in result.stdout and 'gazetteer:' in result.stdout
  assert 'training on IOBES tags' in result.stdout
  res = json.loads((workdir / 'result.json').read_text())
  assert res['trained_on'] == 'sentences'
  assert res['selected']['rule'] == 'best dev F1'
  assert set(res['first_pass']) >= {'half_0_dev_f1', 'half_1_dev_f1'}
  examples = (workdir / 'examples.md').read_text()
  assert examples.count('\n') == 2 + 5 and 'Paris Hilton' in examples

  # The saved model (features, gazetteer, first pass, IOBES decoded back to
  # the file's IOB2) tags the test file exactly as training scored it.
  pred = tmp_path / 'pred.txt'
  result = run_entry(
    'experiments.evaluate',
    f'--model_dir={workdir}',
    f'--data={corpus}/test.txt',
    f'--output={pred}',
  )
  assert result.returncode == 0, result.stderr
  assert f'{res["test"]["f1"]:.2f}' in result.stdout
  tags = {line.split()[-1] for line in pred.read_text().split('\n') if line}
  assert tags <= {'O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC', 'B-ORG', 'I-ORG'}


def test_a_bad_gazetteer_file_is_one_line(corpus, tmp_path):
  bad = tmp_path / 'gaz.txt'
  bad.write_text('LOC Kyoto\n')  # a space, not a tab
  base = ('experiments.train', *SMALL, f'--data_dir={corpus}')
  result = run_entry(
    *base,
    '--features=gazetteer',
    f'--gazetteer={bad}',
    f'--workdir={tmp_path / "a"}',
  )
  assert_one_line_error(result, f'{bad}:1:', 'TYPE<TAB>phrase')
  result = run_entry(*base, f'--gazetteer={bad}', f'--workdir={tmp_path / "b"}')
  assert_one_line_error(result, 'add gazetteer to --features')


def test_ablation_rows_change_one_thing_each():
  rows = ablation.plan()
  added = [s for path, _, s in rows if path == 'added']
  assert added[0] == ablation.Setting()  # today's default
  for before, after in zip(added, added[1:]):
    changed = [
      k for k in before._fields if getattr(before, k) != getattr(after, k)
    ]
    # One thing: a row may set fields that only mean something together
    # (batch size and epochs; the list of features).
    assert 1 <= len(changed) <= 2, changed
  full = added[-1]
  for path, label, s in rows:
    if path == 'removed':
      assert s != full, label
  beyond = ablation.plan('beyond')
  assert beyond[0] == rows[len(added) - 1]  # the full model, the reference
  settings = [s for _, _, s in beyond]
  for before, after in zip(settings, settings[1:]):
    changed = [
      k for k in before._fields if getattr(before, k) != getattr(after, k)
    ]
    assert len(changed) == 1, changed
  assert [p for p, _, _ in beyond[1:]] == ['beyond'] * len(ablation.BEYOND)


def test_ablation_summary_and_the_spread_rule():
  def result(path, label, f1):
    return {
      'path': path,
      'label': label,
      'dev': {
        'f1': f1,
        'precision': f1 - 1,
        'recall': f1 + 1,
        'per_type': {'PER': {'f1': f1}},
      },
      'train_seconds': 1.0,
      'words_per_sec': 1.0,
      'wall_seconds': 1.0,
    }

  results = (
    [result('added', 'a', f) for f in (90.0, 90.2, 90.1)]
    + [result('added', 'b', f) for f in (91.0, 91.1, 91.2)]
    + [result('added', 'c', f) for f in (91.1, 91.3, 91.0)]
    + [result('removed', 'd', f) for f in (90.0, 90.9, 91.0)]
    + [result('beyond', 'e', f) for f in (92.0, 92.1, 92.2)]
  )
  rows = {r['label']: r for r in ablation.summarize(results)}
  assert rows['a']['delta'] is None
  assert rows['b']['delta'] == pytest.approx(1.0)
  assert rows['b']['exceeds'] is True  # 1.0 > both ranges (0.2)
  assert rows['c']['exceeds'] is False  # 0.03 < 0.3
  assert rows['d']['delta'] == pytest.approx(90.6333 - 91.1333, abs=1e-3)
  assert rows['d']['exceeds'] is False  # 0.5 < range 1.0
  # A 'beyond' row's reference is the row above it on its path: the full.
  assert rows['e']['delta'] == pytest.approx(92.1 - 91.1333, abs=1e-3)
  assert rows['e']['precision'] == pytest.approx([91.0, 91.1, 91.2])
  assert rows['e']['unseen'] is None and rows['e']['cross'] is None
  assert rows['e']['lowercased'] is None
  one_seed = ablation.summarize([results[0], results[3]])
  assert one_seed[1]['exceeds'] is None  # one seed: no spread, no verdict


@pytest.mark.slow  # ./launch.sh test -m slow
def test_the_ablation_entry_point_runs_its_rows(corpus, tmp_path):
  """The beyond path (the full model, the ensemble, the bias rule, windows
  of windows) run as a user runs it, one seed, scored on another corpus."""
  workdir = tmp_path / 'gen'
  result = run_entry(
    'experiments.ablation',
    '--rows=beyond',
    '--seeds=0',
    '--embeddings=random',
    f'--data_dir={corpus}',
    f'--cross_data={corpus}/test.txt',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  rows = json.loads((workdir / 'results.json').read_text())['results']
  labels = [label for _, label, _ in ablation.plan('beyond')]
  assert [r['label'] for r in rows] == labels
  assert rows[-1]['setting']['model'] == 'dilated'
  assert all('cross' in r and 'lowercased' in r for r in rows)
  assert (workdir / 'report.md').exists() and (
    workdir / 'ablation.png'
  ).exists()
