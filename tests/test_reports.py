"""What the studies' reports write: CSV columns of numbers, readable plots,
and a results page that names the run directories it gathered."""

import csv
import json
import pathlib
import re
import shutil

import pytest

from research.formulas import model as model_lib
from research.reports import ablation as ablation_report
from research.reports import objective_l2 as objective_l2_report
from research.reports import render
from research.reports import results_page
from research.training import classifier
from tests.conftest import REPO


def read_csv(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def assert_numbers(rows, text_columns):
  """Every cell outside text_columns is a number or blank."""
  for row in rows:
    for key, cell in row.items():
      if key not in text_columns and cell != '':
        float(cell)  # raises on '0 *', '91.2 ± 0.3', '12,345'


@pytest.fixture
def figures(monkeypatch):
  """The figures render.save writes, kept open for inspection."""
  saved = []

  def save(fig, path):
    saved.append(fig)
    fig.savefig(path)
    return pathlib.Path(path).name

  monkeypatch.setattr(render, 'save', save)
  yield saved
  for fig in saved:
    render.plt.close(fig)


def sweep_of_one_evaluation():
  """objective_l2.run's output for --epochs=1: one point per curve."""
  results = []
  for l2 in (0.0, 1e-4):
    for seed in (0, 1):
      results.append(
        {
          'objective': 'xent',
          'l2': l2,
          'seed': seed,
          'dev': {'f1': 60.0 + 10 * l2 + seed},
          'test': {'f1': 55.0 + seed},
          'final_train_loss': 0.5,
          'weight_norm': 12.0,
          'curve': [{'step': 20, 'train_f1': 70.0, 'dev_f1': 60.0}],
        }
      )
  timings = [
    {
      'objective': 'xent',
      'configs': 4,
      'vmap': True,
      'seconds': 1.0,
      'train_windows_per_sec': 1000.0,
    }
  ]
  return {'results': results, 'timings': timings}


def write_sweep_of_one_evaluation(workdir):
  objective_l2_report.write_outputs(
    workdir,
    sweep_of_one_evaluation(),
    data_dir='data',
    model_cfg=model_lib.ModelConfig(),
    cfg=classifier.TrainConfig(),
    lr=1e-3,
    epochs=1,
    seeds=[0, 1],
    has_test=True,
  )


def test_sweep_csv_holds_numbers_and_marks_the_best_apart(tmp_path):
  write_sweep_of_one_evaluation(tmp_path)
  rows = read_csv(tmp_path / 'results.csv')
  assert_numbers(rows, {'objective'})
  assert [float(r['l2']) for r in rows] == [0.0, 1e-4]
  assert [r['best'] for r in rows] == ['0', '1']


def test_learning_curves_of_one_evaluation_are_visible(tmp_path, figures):
  """--epochs=1: one point per curve, drawn as a marker (a line of one
  point is invisible)."""
  write_sweep_of_one_evaluation(tmp_path)
  curves = figures[-1]
  lines = [line for ax in curves.axes for line in ax.get_lines()]
  assert lines and all(len(line.get_xdata()) == 1 for line in lines)
  assert all(line.get_marker() not in (None, '', 'None') for line in lines)


def test_ablation_csv_holds_numbers(tmp_path, figures):
  results = [
    {
      'path': path,
      'label': label,
      'setting': {},
      'seed': seed,
      'dev': {
        'f1': 80.0 + seed,
        'precision': 81.0,
        'recall': 79.0,
        'unseen': {'f1': 70.0 + seed},
        'per_type': {'PER': {'f1': 85.0}},
      },
      'test': {'f1': 78.0},
      'cross': {'f1': 55.0},
      'train_seconds': 3.0,
      'words_per_sec': 12345.0,
      'wall_seconds': 4.0,
    }
    for path, label in (('added', 'default'), ('added', '+ x'))
    for seed in (0, 1)
  ]
  ablation_report.write_outputs(tmp_path, results, data_dir='d', seeds=[0, 1])
  rows = read_csv(tmp_path / 'results.csv')
  assert_numbers(rows, {'path', 'row'})
  assert float(rows[0]['words_per_sec']) == 12345
  assert float(rows[0]['unseen_f1_mean']) == 70.5
  assert float(rows[1]['cross_f1_mean']) == 55
  report = (tmp_path / 'report.md').read_text()
  assert '| dev P | dev R | dev unseen F1 | cross-domain F1 |' in report


def fake_train_run(root, name, f1, platform='cpu'):
  """A finished train run's directory: flags.txt and a result.json with
  dev scores of `f1`, run on `platform`."""
  run = root / name
  run.mkdir(parents=True, exist_ok=True)
  (run / 'flags.txt').write_text('# ./launch.sh train\n--data_dir=d\n')
  scores = {'precision': f1, 'recall': f1, 'f1': f1, 'accuracy': 1.0}
  (run / 'result.json').write_text(
    json.dumps(
      {
        'dev': scores,
        'train_windows_per_sec': 1.0,
        'train_seconds': 1.0,
        'compile_seconds': 1.0,
        'backend': {
          'platform': platform,
          'device': f'a {platform}',
          'jax': '0.0',
          'matmul_precision': 'default',
        },
      }
    )
  )
  return run


def test_results_page_names_the_directories_it_gathered(tmp_path):
  run = fake_train_run(tmp_path / 'mine', 'a-run', 1.0)
  page = tmp_path / 'page' / 'results.md'
  results_page.write([run], page)
  text = page.read_text()
  assert f'`{run.parent}/` (`a-run`)' in text
  assert 'runs/results' not in text


def test_results_page_update_keeps_the_other_sections(tmp_path):
  """report --update: a new run's section is added (or replaced) and the
  sections of runs not given stay as they were, in the page's order."""

  def train_run(name, f1):
    return fake_train_run(tmp_path / 'runs', name, f1)

  page = tmp_path / 'page' / 'results.md'
  results_page.write([train_run('b-run', 11.5), train_run('c-run', 22.5)], page)
  before = results_page.kept_sections(page, set())
  shutil.rmtree(tmp_path / 'runs')  # gone: the update keeps their sections
  results_page.write([train_run('a-run', 33.5)], page, update=True)
  after = results_page.kept_sections(page, set())
  assert [h for h, _ in after] == [
    'train: a-run',
    'train: b-run',
    'train: c-run',
  ]
  assert after[1:] == before and '33.50' in after[0][1]
  assert 'kept from an earlier gathering' in page.read_text()
  results_page.write([train_run('a-run2', 44.5)], page)  # no update: replaced
  assert [h for h, _ in results_page.kept_sections(page, set())] == [
    'train: a-run2'
  ]


def test_readme_headline_update_keeps_other_rows_and_only_cpu_runs(tmp_path):
  """report --update rewrites the README's rows of the runs it gathers and
  keeps the others; a run on another backend gets a section (its machine,
  its note.md) but no headline row."""

  def train_run(name, f1, platform='cpu'):
    return fake_train_run(tmp_path / 'runs', name, f1, platform)

  readme = tmp_path / 'README.md'
  readme.write_text(
    f'top\n{results_page.HEADLINE_START}\n{results_page.HEADLINE_END}\nend\n'
  )
  page = tmp_path / 'page' / 'results.md'
  runs = [train_run('a-run', 11.5), train_run('b-run', 22.5)]
  results_page.write(runs, page, readme=readme)
  gpu = train_run('gpu-run', 55.5, platform='gpu')
  (gpu / 'note.md').write_text('On a borrowed GPU.')
  results_page.write(
    [train_run('b-run', 33.5), gpu], page, readme=readme, update=True
  )
  rows = [r for r in readme.read_text().splitlines() if r.startswith('| ')]
  assert [r.split('|')[1].strip() for r in rows[1:]] == ['a-run', 'b-run']
  assert '11.50' in rows[1] and '33.50' in rows[2]
  text = page.read_text()
  assert 'On a borrowed GPU.' in text and 'Machine: a gpu (gpu)' in text


def test_ablation_names_the_generalization_measures_that_moved():
  rows = [
    {'label': 'full', 'changes': {}},
    {
      'label': '+ x',
      'changes': {'cross': (4.5, True), 'unseen': (0.3, False)},
    },
    {'label': '+ y', 'changes': {'lowercased': (-2.0, True)}},
  ]
  assert ablation_report.generalization_changes(rows) == [
    '+ x: cross-domain F1 +4.50',
    '+ y: lowercased dev F1 -2.00',
  ]


def test_reports_show_no_machine_paths():
  assert render.shown_path(REPO / 'data' / 'wikigold') == 'data/wikigold'
  assert render.shown_path('../shared/data/conll2003') == (
    '../shared/data/conll2003'
  )
  assert render.shown_path('/somewhere/else/data/conll2003') == (
    '…/data/conll2003'
  )


def test_the_derivations_page_links_each_function_and_counts_its_rows(
  tmp_path,
):
  from research.formulas.autodiff import Diff  # noqa: PLC0415
  from research.reports import derivations  # noqa: PLC0415

  rows = [
    ('softmax/xent', Diff('W', 1e-17, 3e-16, True)),
    ('char_cnn/one', Diff('W_char', 1.0, 0.5, False)),
  ]
  page = derivations.page(rows, tmp_path / 'docs' / 'derivations.md', 0, 1e-10)
  text = page.read_text()
  assert '2 rows, 1 passed, 1 failed' in text
  assert 'Gradient check: 1 rows (softmax/, hidden/...), all pass' in text
  assert '1 FAIL; largest relative error 5.0e-01' in text
  assert 'No gradient-check rows were run' in text  # the L2 section
  links = re.findall(r'\]\(([^)#]+)#L(\d+)\)', text)
  assert len(links) >= 20
  for target, line in links:
    source = (page.parent / target).resolve().read_text().split('\n')
    assert source[int(line) - 1].startswith('def '), (target, line)
