"""What evaluate and predict write: CoNLL columns, score tables, files.

`conll_text` writes `token gold predicted` lines, the input of the original
perl `conlleval`, or `token predicted` lines. Columns are separated by one
space, so a token that holds whitespace (read from a tab-separated file,
e.g. 'New York') is written with each whitespace character replaced by '_'
('New_York'): the columns stay valid for conlleval, at the price of not
telling 'New York' from 'New_York'.
"""

import pathlib
import re

from research import files
from research.data import conll as data_lib
from research.errors import UserError
from research.evaluation import novelty

_WHITESPACE = re.compile(r'\s')


def column(token):
  """Returns `token` as one column: whitespace -> '_', '' -> EMPTY_TOKEN."""
  return _WHITESPACE.sub('_', token) or data_lib.EMPTY_TOKEN


def conll_text(tokens, *tag_columns):
  """Formats sentences as CoNLL columns separated by single spaces.

  Args:
    tokens: The tokens of each sentence.
    *tag_columns: Columns of tags, each holding the tags of each sentence
      (e.g. the gold tags, then the predicted ones).

  Returns:
    One line per token, `token tag...`, the token passed through `column`;
    each sentence followed by a blank line.

  Raises:
    ValueError: A column has another number of sentences or tags.
  """
  if any(len(tags) != len(tokens) for tags in tag_columns):
    raise ValueError(
      f'{len(tokens)} sentences but columns of '
      f'{[len(tags) for tags in tag_columns]}'
    )
  out = []
  for i, sentence in enumerate(tokens):
    rows = [sentence] + [tags[i] for tags in tag_columns]
    if any(len(row) != len(sentence) for row in rows):
      raise ValueError(f'sentence {i}: {[len(r) for r in rows]} tags/tokens')
    out.extend(
      ' '.join([column(token), *tags]) + '\n' for token, *tags in zip(*rows)
    )
    out.append('\n')
  return ''.join(out)


def format_scores(scores, title=''):
  """Formats entity scores as a table: overall, then one row per type.

  Args:
    scores: `metrics.as_dict` of the scores (e.g. `Evaluation.scores`, or a
      split of result.json).
    title: An optional first line.

  Returns:
    Text without a trailing newline: the title, a header, the 'overall' row
    and one row per type (precision, recall and F1 in percent, then the
    numbers of gold, found and correct chunks), and the token accuracy;
    then, when the scores have them, a header and the rows of the 'unseen'
    and 'seen' entities (research/evaluation/novelty.py).
  """
  rows = [('overall', scores)] + sorted(scores['per_type'].items())
  groups = [(g, scores[g]) for g in novelty.GROUPS if g in scores]
  width = max(len(name) for name, _ in rows + groups)
  lines = [title] if title else []
  lines += _score_rows('type', rows, width)
  lines.append(f'token accuracy {scores["accuracy"]:.2f}%')
  if groups:
    lines.append(
      'entities whose string is (seen) or is not (unseen) an entity of the '
      'training data'
    )
    lines += _score_rows('group', groups, width)
  return '\n'.join(lines)


def _score_rows(head, rows, width):
  """A header and one line of P/R/F1 and counts per (name, scores) row."""
  width = max(width, len(head))
  lines = [
    f'{head:<{width}}  precision  recall      F1    gold   found  correct'
  ]
  for name, s in rows:
    lines.append(
      f'{name:<{width}}  {s["precision"]:9.2f}  {s["recall"]:6.2f}'
      f'  {s["f1"]:6.2f}  {s["num_gold"]:6d}  {s["num_pred"]:6d}  '
      f'{s["num_correct"]:7d}'
    )
  return lines


def check_output(output, overwrite=False):
  """Refuses an output file that exists, unless `overwrite`.

  Args:
    output: The file to be written.
    overwrite: Whether an existing file may be replaced.

  Returns:
    `output` as a pathlib.Path.

  Raises:
    UserError: `output` is a directory, or exists and not `overwrite`.
  """
  path = pathlib.Path(output)
  if path.is_dir():
    raise UserError(f'`output={path}` is a directory; pass a file name')
  if path.exists() and not overwrite:
    raise UserError(
      f'`output={path}` exists; pass another `output`, or '
      '`overwrite` to replace it'
    )
  return path


def write_text(path, text):
  """Writes `text` (UTF-8) to `path`, creating its directory."""
  path = pathlib.Path(path)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise files.fault(e, path) from None
  files.write_text(path, text)
