r"""Tags text or a CoNLL file with a model trained by experiments.train.

  ./launch.sh predict --model_dir=runs/conll --text="EU rejects German call"
  echo "Paris Hilton visited Paris ." | \
      ./launch.sh predict --model_dir=runs/conll
  ./launch.sh predict --model_dir=runs/conll --input=test.txt --output=pred.txt

Text (--text, or stdin) is split on whitespace (punctuation should be
separated, as in CoNLL); each input line is one sentence; it prints
`token TAG` lines, then the entity spans found with conlleval's chunk rules.
Stdin is read as UTF-8, like files; text without a sentence is an error.
--input reads a CoNLL file (token first; a tag column, if any, is ignored)
and writes `token predicted` lines with a blank line between sentences, to
--output or stdout; whitespace inside a token is written as '_'
(research/evaluation/tag_output.py). A single-file corpus (one file alone in its
directory, which train splits by documents) is read for its test split
unless --split says otherwise. --output also takes the tags of --text; an
existing --output is refused unless --overwrite.
"""

import sys

from absl import flags

from experiments import _configs
from experiments import _flag_spec
from experiments import _flags
from experiments import _run
from research.data import conll as data_lib
from research.errors import UserError
from research.evaluation import tag_output
from research.evaluation import tagging

_flag_spec.use('model_dir', 'o_bias', 'split', 'overwrite')
_TEXT = flags.DEFINE_string(
  'text', None, 'Text to tag (default: stdin, unless --input).'
)
_INPUT = flags.DEFINE_string(
  'input', None, 'A CoNLL file to tag (token first).'
)
_OUTPUT = flags.DEFINE_string(
  'output', None, "Write 'token predicted' lines to this file."
)


def _read_text():
  """The text to tag: --text, or stdin (decoded as files are)."""
  if _TEXT.value is not None:
    where, text = '--text', _TEXT.value
  else:
    if sys.stdin.isatty():
      print(
        'reading sentences from stdin (one per line; Ctrl-D ends)',
        file=sys.stderr,
      )
    where = '<stdin>'
    text = data_lib.decode(sys.stdin.buffer.read(), where)
  lines = text.splitlines()
  if not any(line.split() for line in lines):
    raise UserError(
      f'{where}: no sentence to tag (it is empty or blank); give one '
      'sentence a line, tokens separated by spaces'
    )
  return lines


def main(_):
  if not _flags.MODEL_DIR.value:
    raise UserError(
      'pass --model_dir, the --workdir of an experiments.train run'
    )
  if _INPUT.value and _TEXT.value is not None:
    raise UserError('pass either --text or --input, not both')
  if _flags.SPLIT.value and not _INPUT.value:
    raise UserError('--split picks the documents of an --input file; pass one')
  output = _OUTPUT.value and tag_output.check_output(
    _OUTPUT.value, _flags.OVERWRITE.value
  )
  model = _configs.trained_model()
  if _INPUT.value:
    sentences = tagging.read_sentences(
      _INPUT.value,
      require_tags=False,
      split=_configs.corpus_split(_INPUT.value, _flags.MODEL_DIR.value),
    )
    tokens = [s.tokens for s in sentences]
    predicted = tagging.tag(model, sentences)
  else:
    tagged = tagging.tag_text(model, _read_text())
    tokens = [sentence for sentence, _ in tagged]
    predicted = [tags for _, tags in tagged]
  if output:
    tag_output.write_text(output, tag_output.conll_text(tokens, predicted))
    _run.log(f'wrote {output} ({len(tokens):,} sentences)')
  elif _INPUT.value:
    sys.stdout.write(tag_output.conll_text(tokens, predicted))
  else:
    for sentence, tags in zip(tokens, predicted):
      for token, tag in zip(sentence, tags):
        print(f'{token}\t{tag}')
      print('entities:', tagging.entity_spans(sentence, tags))
      print()


if __name__ == '__main__':
  _run.run(main)
