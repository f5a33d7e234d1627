"""Tagging and scoring with a saved model, through the entry points.

One tiny model is trained once for the module, as a user does
(experiments.train), then experiments.evaluate and experiments.predict are
run on it. The `token gold predicted` file evaluate writes is scored again by
an independent port of the perl conlleval written here.
"""

import collections
import json
import os
import pty
import shutil
import subprocess
import sys

import pytest

from research.errors import UserError
from research.evaluation import metrics
from research.evaluation import tag_output
from research.evaluation import tagging
from tests.conftest import REPO
from tests.conftest import entry_env
from tests.conftest import run_entry
from tests.conftest import write_corpus


def assert_one_line_error(result, *fragments):
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr  # no traceback
  assert lines[0].startswith('error: ')
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(corpus directory, run directory) of one tiny experiments.train run."""
  root = tmp_path_factory.mktemp('tagging')
  corpus = write_corpus(root / 'corpus')
  workdir = root / 'run'
  result = run_entry(
    'experiments.train',
    f'--data_dir={corpus}',
    '--embeddings=random',
    '--epochs=2',
    f'--workdir={workdir}',
    '--hidden=16',
  )
  assert result.returncode == 0, result.stderr
  return corpus, workdir


@pytest.fixture(scope='module')
def evaluated(trained):
  """(stdout, --output file) of experiments.evaluate on the test file."""
  corpus, workdir = trained
  output = workdir.parent / 'eval' / 'pred.txt'
  result = run_entry(
    'experiments.evaluate',
    f'--model_dir={workdir}',
    f'--data={corpus / "test.txt"}',
    f'--output={output}',
  )
  assert result.returncode == 0, result.stderr
  return result.stdout, output


def printed_scores(stdout):
  """{type: (precision, recall, f1, gold, found, correct)} from the table."""
  lines = stdout.splitlines()
  header = next(i for i, line in enumerate(lines) if line.startswith('type '))
  rows = {}
  for line in lines[header + 1 :]:
    if line.startswith('token accuracy'):
      break
    name, *numbers = line.split()
    rows[name] = (*map(float, numbers[:3]), *map(int, numbers[3:]))
  return rows


def read_columns(path):
  """The sentences of a CoNLL file we wrote: lists of lists of columns."""
  sentences = [[]]
  for line in path.read_text(encoding='utf-8').split('\n'):
    if line:
      sentences[-1].append(line.split(' '))
    elif sentences[-1]:
      sentences.append([])
  return [s for s in sentences if s]


# An independent port of conlleval.pl (2004-01-26, default options), for
# IOB tags: startOfChunk/endOfChunk and the main loop over the lines.


def _end_of_chunk(prev_tag, tag, prev_type, type_):
  end = (prev_tag, tag) in {
    ('B', 'B'),
    ('B', 'O'),
    ('I', 'B'),
    ('I', 'O'),
    ('E', 'E'),
    ('E', 'I'),
    ('E', 'O'),
  }
  return end or (prev_tag not in ('O', '.') and prev_type != type_)


def _start_of_chunk(prev_tag, tag, prev_type, type_):
  start = (prev_tag, tag) in {
    ('B', 'B'),
    ('I', 'B'),
    ('O', 'B'),
    ('O', 'I'),
    ('E', 'E'),
    ('E', 'I'),
    ('O', 'E'),
  }
  return start or (tag not in ('O', '.') and prev_type != type_)


def _split_tag(tag):
  prefix, _, type_ = tag.partition('-')
  return prefix, type_


def conlleval(lines):
  """Scores 'token gold guessed' lines as conlleval.pl does.

  Args:
    lines: The lines of the file, without newlines ('' between sentences).

  Returns:
    {type or 'overall': (precision, recall, fb1, found correct, found
    guessed, correct chunks)}.
  """
  correct_chunks = collections.Counter()
  found_correct = collections.Counter()
  found_guessed = collections.Counter()
  in_correct = False
  last_correct, last_correct_type = 'O', ''
  last_guessed, last_guessed_type = 'O', ''
  for line in [*lines, '']:
    features = line.split(' ') if line else []
    if not features or features[0] == '-X-':
      features = ['-X-', 'O', 'O']
    correct, correct_type = _split_tag(features[-2])
    guessed, guessed_type = _split_tag(features[-1])
    if features[0] == '-X-':
      guessed = 'O'
    if in_correct:
      ends_correct = _end_of_chunk(
        last_correct, correct, last_correct_type, correct_type
      )
      ends_guessed = _end_of_chunk(
        last_guessed, guessed, last_guessed_type, guessed_type
      )
      if (
        ends_correct and ends_guessed and last_guessed_type == last_correct_type
      ):
        in_correct = False
        correct_chunks[last_correct_type] += 1
      elif ends_correct != ends_guessed or guessed_type != correct_type:
        in_correct = False
    starts_correct = _start_of_chunk(
      last_correct, correct, last_correct_type, correct_type
    )
    starts_guessed = _start_of_chunk(
      last_guessed, guessed, last_guessed_type, guessed_type
    )
    if starts_correct and starts_guessed and guessed_type == correct_type:
      in_correct = True
    if starts_correct:
      found_correct[correct_type] += 1
    if starts_guessed:
      found_guessed[guessed_type] += 1
    last_correct, last_correct_type = correct, correct_type
    last_guessed, last_guessed_type = guessed, guessed_type
  if in_correct:
    correct_chunks[last_correct_type] += 1

  def score(right, guessed, gold):
    precision = 100 * right / guessed if guessed else 0.0
    recall = 100 * right / gold if gold else 0.0
    total = precision + recall
    fb1 = 2 * precision * recall / total if total else 0.0
    return precision, recall, fb1, gold, guessed, right

  out = {
    'overall': score(
      sum(correct_chunks.values()),
      sum(found_guessed.values()),
      sum(found_correct.values()),
    )
  }
  for t in sorted(found_correct.keys() | found_guessed.keys()):
    out[t] = score(correct_chunks[t], found_guessed[t], found_correct[t])
  return out


def test_conlleval_port_on_known_cases():
  # From conlleval's own rules: I- after O starts a chunk; a type change
  # ends one; a chunk is correct only if both ends and the type match.
  lines = [
    'a B-PER B-PER',
    'b I-PER I-PER',
    'c O I-LOC',
    '',
    'd I-ORG B-ORG',
    'e I-ORG I-PER',
    '',
    'f B-LOC B-LOC',
  ]
  scores = conlleval(lines)
  assert scores['overall'][3:] == (3, 5, 2)
  assert scores['PER'][3:] == (1, 2, 1) and scores['LOC'][3:] == (1, 2, 1)


def test_evaluate_prints_the_f1_of_the_training_run(trained, evaluated):
  _, workdir = trained
  stdout, _ = evaluated
  test = json.loads((workdir / 'result.json').read_text())['test']
  printed = printed_scores(stdout)
  assert printed['overall'][2] == float(f'{test["f1"]:.2f}')
  assert printed['overall'][:3] == tuple(
    float(f'{test[k]:.2f}') for k in ('precision', 'recall', 'f1')
  )
  for t, s in test['per_type'].items():
    assert printed[t][2] == float(f'{s["f1"]:.2f}')
  assert f'token accuracy {test["accuracy"]:.2f}%' in stdout


def test_evaluate_prints_the_unseen_and_seen_scores_of_the_training_run(
  trained, evaluated
):
  """The entities whose string is not (unseen) or is (seen) a training
  entity: the same scores as training wrote, adding up to the overall."""
  _, workdir = trained
  stdout, _ = evaluated
  test = json.loads((workdir / 'result.json').read_text())['test']
  lines = stdout.splitlines()
  header = next(i for i, line in enumerate(lines) if line.startswith('group '))
  printed = {}
  for line in lines[header + 1 : header + 3]:
    name, *numbers = line.split()
    printed[name] = (*map(float, numbers[:3]), *map(int, numbers[3:]))
  keys = ('precision', 'recall', 'f1', 'num_gold', 'num_pred', 'num_correct')
  for group in ('unseen', 'seen'):
    s = test[group]
    assert printed[group] == (
      *(float(f'{s[k]:.2f}') for k in keys[:3]),
      *(s[k] for k in keys[3:]),
    )
  for k in keys[3:]:
    assert test['unseen'][k] + test['seen'][k] == test[k]


def test_evaluate_output_scored_by_a_conlleval_port(trained, evaluated):
  corpus, _ = trained
  stdout, output = evaluated
  sentences = read_columns(output)
  gold_sentences = tagging.read_sentences(corpus / 'test.txt')
  assert [[row[0] for row in s] for s in sentences] == [
    list(s.tokens) for s in gold_sentences
  ]
  assert all(len(row) == 3 for s in sentences for row in s)
  result = metrics.evaluate(
    [[row[1] for row in s] for s in sentences],
    [[row[2] for row in s] for s in sentences],
  )
  ours = metrics.as_dict(result)
  port = conlleval(output.read_text(encoding='utf-8').split('\n'))
  assert ours['num_pred'] > 0 and ours['num_correct'] > 0  # not trivial
  assert port['overall'][3:] == (
    ours['num_gold'],
    ours['num_pred'],
    ours['num_correct'],
  )
  for k, key in enumerate(('precision', 'recall', 'f1')):
    assert port['overall'][k] == pytest.approx(ours[key], abs=1e-9)
  assert sorted(port) == sorted(['overall', *ours['per_type']])
  printed = printed_scores(stdout)
  for t, s in port.items():
    assert printed[t] == (*(round(v, 2) for v in s[:3]), *s[3:]), t


def test_predict_writes_one_tag_per_token(trained, evaluated):
  corpus, workdir = trained
  _, evaluation = evaluated
  output = workdir.parent / 'predict' / 'tags.txt'
  result = run_entry(
    'experiments.predict',
    f'--model_dir={workdir}',
    f'--input={corpus / "test.txt"}',
    f'--output={output}',
  )
  assert result.returncode == 0, result.stderr
  text = output.read_text(encoding='utf-8')
  assert text.endswith('\n\n') and '\n\n\n' not in text
  sentences = read_columns(output)
  gold_sentences = tagging.read_sentences(corpus / 'test.txt')
  assert [[row[0] for row in s] for s in sentences] == [
    list(s.tokens) for s in gold_sentences
  ]
  tags = (workdir / 'tags.txt').read_text().split()
  assert all(len(row) == 2 and row[1] in tags for s in sentences for row in s)
  # The same model tags the same file alike in both entry points.
  assert [[row[1] for row in s] for s in sentences] == [
    [row[2] for row in s] for s in read_columns(evaluation)
  ]


def test_predict_tab_file_with_spaces_and_empty_tokens(trained, tmp_path):
  _, workdir = trained
  source = tmp_path / 'in.conll'
  source.write_text(
    'Anna Berg\tB-PER\n\tO\nvisited\tO\n\nKyoto\tB-LOC\n', encoding='utf-8'
  )
  result = run_entry(
    'experiments.predict', f'--model_dir={workdir}', f'--input={source}'
  )
  assert result.returncode == 0, result.stderr
  lines = result.stdout.split('\n')
  assert [line.split(' ')[0] for line in lines] == [
    'Anna_Berg',
    '<empty>',
    'visited',
    '',
    'Kyoto',
    '',
    '',
  ]
  assert all(len(line.split(' ')) == 2 for line in lines if line)


def test_conll_text_keeps_the_columns():
  text = tag_output.conll_text(
    [('New York', ''), ('a\u00a0b',)],
    [['B-LOC', 'O'], ['O']],
    [['B-LOC', 'B-PER'], ['O']],
  )
  assert text == 'New_York B-LOC B-LOC\n<empty> O B-PER\n\na_b O O\n\n'


def test_evaluate_refuses_an_existing_output(trained, tmp_path):
  corpus, workdir = trained
  output = tmp_path / 'pred.txt'
  output.write_text('precious')
  result = run_entry(
    'experiments.evaluate',
    f'--model_dir={workdir}',
    f'--data={corpus / "test.txt"}',
    f'--output={output}',
  )
  assert_one_line_error(result, str(output), '--overwrite')
  assert output.read_text() == 'precious'
  result = run_entry('experiments.evaluate', f'--model_dir={workdir}')
  assert_one_line_error(result, '--data')


# --- A single-file corpus: evaluate and predict read its test split. ------


def single_file_corpus(directory, documents=20):
  """One file of `documents` documents, document i holding i % 3 + 1
  sentences; returns (path, sentences per document)."""
  directory.mkdir(parents=True)
  lines, counts = [], []
  for i in range(documents):
    lines += ['-DOCSTART- -X- O', '']
    counts.append(i % 3 + 1)
    for _ in range(counts[-1]):
      lines += ['Anna B-PER', 'Berg I-PER', 'visited O', 'Kyoto B-LOC', '']
  path = directory / 'corpus.conll'
  path.write_text('\n'.join(lines))
  return path, counts


def as_trained_on(workdir, data_dir, tmp_path):
  """A copy of the run in workdir whose flags say it trained on data_dir."""
  copy = tmp_path / 'model'
  shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns('checkpoints'))
  flags_txt = copy / 'flags.txt'
  lines = [
    f'--data_dir={data_dir}' if line.startswith('--data_dir=') else line
    for line in flags_txt.read_text().splitlines()
  ]
  flags_txt.write_text('\n'.join(lines) + '\n')
  return copy


def test_evaluate_scores_the_test_split_of_a_single_file_corpus(
  trained, tmp_path
):
  """train splits a single-file corpus by documents (i % 10 == 9: test);
  evaluate of a model trained on it scores that split by default, saying
  so, not the whole file."""
  path, counts = single_file_corpus(tmp_path / 'single')
  workdir = as_trained_on(trained[1], path.parent, tmp_path)
  want = {
    'test': sum(c for i, c in enumerate(counts) if i % 10 == 9),
    'dev': sum(c for i, c in enumerate(counts) if i % 10 == 8),
    'all': sum(counts),
  }
  for split in (None, 'dev', 'all'):
    result = run_entry(
      'experiments.evaluate',
      f'--model_dir={workdir}',
      f'--data={path}',
      *([f'--split={split}'] if split else []),
    )
    assert result.returncode == 0, result.stderr
    shown = split or 'test'
    assert f'{want[shown]:,} sentences' in result.stdout, result.stdout
    notes = result.stderr.strip().splitlines()
    assert len(notes) == 1 and f'its {shown} split' in notes[0], notes
  result = run_entry(
    'experiments.predict', f'--model_dir={workdir}', f'--input={path}'
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.count('\n\n') == want['test']
  assert 'its test split' in result.stderr


def test_a_single_file_corpus_a_model_never_saw_is_read_whole(
  trained, tmp_path
):
  """Only the corpus a model was trained on holds its training part: any
  other single file is scored whole, with no note."""
  path, counts = single_file_corpus(tmp_path / 'other')
  result = run_entry(
    'experiments.evaluate', f'--model_dir={trained[1]}', f'--data={path}'
  )
  assert result.returncode == 0, result.stderr
  assert f'{sum(counts):,} sentences' in result.stdout, result.stdout
  assert 'split' not in result.stderr


def test_split_of_a_file_that_is_read_whole_is_refused(trained):
  corpus, workdir = trained
  result = run_entry(
    'experiments.evaluate',
    f'--model_dir={workdir}',
    f'--data={corpus / "test.txt"}',
    '--split=test',
  )
  assert_one_line_error(result, '--split=test', 'not a single-file corpus')


# --- predict's text: empty input, stdin. ----------------------------------


def run_predict(workdir, *args, stdin=b''):
  """predict with bytes on stdin; stdout and stderr decoded."""
  return subprocess.run(
    [sys.executable, '-m', 'experiments.predict', f'--model_dir={workdir}']
    + list(args),
    cwd=REPO,
    env=entry_env(),
    input=stdin,
    capture_output=True,
    timeout=300,
    check=False,
  )


@pytest.mark.parametrize(
  'args,stdin,fragments',
  [
    (['--text='], b'', ['--text', 'no sentence to tag']),
    ([], b'\n  \n', ['<stdin>', 'no sentence to tag']),
    ([], b'Anna visited\nKyoto \xff .\n', ['<stdin>:2', 'not valid UTF-8']),
  ],
)
def test_predict_refuses_text_without_a_sentence(
  trained, args, stdin, fragments
):
  _, workdir = trained
  result = run_predict(workdir, *args, stdin=stdin)
  assert result.returncode == 2, result.stderr
  lines = result.stderr.decode().strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), lines
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  assert not result.stdout


def test_predict_says_it_reads_a_terminal(trained):
  """On a terminal, predict says that it waits for sentences."""
  _, workdir = trained
  leader, follower = pty.openpty()
  proc = subprocess.Popen(
    [sys.executable, '-m', 'experiments.predict', f'--model_dir={workdir}'],
    cwd=REPO,
    env=entry_env(),
    stdin=follower,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
  )
  os.close(follower)
  try:
    os.write(leader, b'Anna Berg visited Kyoto .\n\x04')  # a line, Ctrl-D
    stdout, stderr = proc.communicate(timeout=300)
  finally:
    proc.kill()
    os.close(leader)
  assert proc.returncode == 0, stderr
  assert stderr.decode().strip() == (
    'reading sentences from stdin (one per line; Ctrl-D ends)'
  )
  assert stdout.decode().startswith('Anna\t')


def _found(stdout):
  return printed_scores(stdout)['overall'][4]


def test_chars_model_with_a_bias_against_o_chosen_on_dev(tmp_path):
  """A character-CNN model trained with --tune_o_bias keeps the bias chosen
  on dev (the best dev F1 of those tried, when its gain beats the
  bootstrap's noise; else 0) in result.json and config.json;
  evaluate decodes with it (the test scores of result.json again), and
  --o_bias overrides it: a larger bias finds more entities."""
  corpus = write_corpus(tmp_path / 'corpus')
  workdir = tmp_path / 'run'
  result = run_entry(
    'experiments.train',
    f'--data_dir={corpus}',
    '--embeddings=random',
    '--features=chars,shape',
    '--char_filters=8',
    '--char_dim=4',
    '--epochs=2',
    '--hidden=16',
    '--tune_o_bias',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  assert 'bias against O: ' in result.stdout
  saved = json.loads((workdir / 'result.json').read_text())
  tried, test = saved['o_bias_dev_f1'], saved['o_bias_test']
  assert len(tried) == 6
  assert tried[str(test['candidate'])] == max(tried.values())
  kept = test['candidate'] if test['interval'][0] > 0 else 0.0
  assert saved['o_bias'] == kept
  assert saved['dev']['f1'] == tried[str(kept)]
  config = json.loads((workdir / 'config.json').read_text())
  assert config['o_bias'] == saved['o_bias'] and 'chars' in config
  stdout = {}
  for bias in (None, 0.0, 3.0):
    args = [] if bias is None else [f'--o_bias={bias}']
    run = run_entry(
      'experiments.evaluate',
      f'--model_dir={workdir}',
      f'--data={corpus / "test.txt"}',
      *args,
    )
    assert run.returncode == 0, run.stderr
    stdout[bias] = run.stdout
  overall = printed_scores(stdout[None])['overall']
  assert overall[2] == pytest.approx(saved['test']['f1'], abs=0.01)
  assert _found(stdout[3.0]) > _found(stdout[0.0])


def test_a_model_of_an_unregistered_objective_is_refused_in_one_line():
  """A saved model whose objective this code has not registered (one
  registered at run time by the process that trained it) is a user error
  naming it, not a traceback."""
  config = {'model': {}, 'train': {'objective': 'squared_hinge'}}
  with pytest.raises(UserError, match="objective 'squared_hinge'.*register"):
    tagging.from_parts({}, None, ['O'], config)
