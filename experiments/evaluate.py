r"""Scores a model trained by experiments.train on a CoNLL file.

  ./launch.sh evaluate --model_dir=runs/conll --data=test.txt
  ./launch.sh evaluate --model_dir=runs/conll --data=test.txt --output=pred.txt
  perl conlleval < pred.txt

Prints conlleval's entity precision, recall and F1, overall and per type, and
the token accuracy. --output writes `token gold predicted` lines (a blank line
between sentences), the input of the perl conlleval; whitespace inside a token
is written as '_' (research/tagging.py). An existing --output is refused
unless --overwrite.
"""

from absl import flags

from experiments import _shared as common
from research import data as data_lib
from research import tagging
from research.errors import UserError

_MODEL_DIR = flags.DEFINE_string(
  'model_dir', None, 'The --workdir of an experiments.train run.'
)
_DATA = flags.DEFINE_string(
  'data', None, 'The CoNLL file to score (token first, tag last).'
)
_OUTPUT = flags.DEFINE_string(
  'output', None, "Also write 'token gold predicted' lines to this file."
)


def main(_):
  if not _MODEL_DIR.value:
    raise UserError(
      'pass --model_dir, the --workdir of an experiments.train run'
    )
  if not _DATA.value:
    raise UserError('pass --data=FILE, a CoNLL file with the gold tags')
  output = _OUTPUT.value and tagging.check_output(
    _OUTPUT.value, common.OVERWRITE.value
  )
  model = tagging.load(_MODEL_DIR.value)
  result = tagging.evaluate_file(model, _DATA.value)
  if note := data_lib.empty_tokens_note({'data': result.sentences}):
    common.log(note)
  num_tokens = sum(len(s.tokens) for s in result.sentences)
  common.log(
    tagging.format_scores(
      result.scores,
      f'{_DATA.value}: {len(result.sentences):,} sentences, '
      f'{num_tokens:,} tokens',
    )
  )
  if output:
    tagging.write_text(
      output,
      tagging.conll_text(
        [s.tokens for s in result.sentences],
        [s.tags for s in result.sentences],
        result.predicted,
      ),
    )
    common.log(f'wrote {output}')


if __name__ == '__main__':
  common.run(main)
