r"""Scores a model trained by experiments.train on a CoNLL file.

  ./launch.sh evaluate --model_dir=runs/conll --data=test.txt
  ./launch.sh evaluate --model_dir=runs/conll --data=test.txt --output=pred.txt
  perl conlleval < pred.txt

Prints conlleval's entity precision, recall and F1, overall and per type, and
the token accuracy. A single-file corpus (one file alone in its directory,
which train splits by documents) is scored on its test split unless --split
says otherwise; any other file is scored whole. --output writes `token gold
predicted` lines (a blank line between sentences), the input of the perl
conlleval; whitespace inside a token is written as '_' (research/tagging.py).
An existing --output is refused unless --overwrite.
"""

from absl import flags

from experiments import _configs
from experiments import _flags
from experiments import _run
from research import data as data_lib
from research import tagging
from research.errors import UserError

_flags.use('model_dir', 'split', 'overwrite')
_DATA = flags.DEFINE_string(
  'data', None, 'The CoNLL file to score (token first, tag last).'
)
_OUTPUT = flags.DEFINE_string(
  'output', None, "Also write 'token gold predicted' lines to this file."
)


def main(_):
  if not _flags.MODEL_DIR.value:
    raise UserError(
      'pass --model_dir, the --workdir of an experiments.train run'
    )
  if not _DATA.value:
    raise UserError('pass --data=FILE, a CoNLL file with the gold tags')
  output = _OUTPUT.value and tagging.check_output(
    _OUTPUT.value, _flags.OVERWRITE.value
  )
  model = tagging.load(_flags.MODEL_DIR.value)
  split = _configs.corpus_split(_DATA.value, _flags.MODEL_DIR.value)
  result = tagging.evaluate_file(model, _DATA.value, split=split)
  if note := data_lib.empty_tokens_note({'data': result.sentences}):
    _run.log(note)
  num_tokens = sum(len(s.tokens) for s in result.sentences)
  _run.log(
    tagging.format_scores(
      result.scores,
      f'{_DATA.value}{f" ({split} split)" if split else ""}: '
      f'{len(result.sentences):,} sentences, {num_tokens:,} tokens',
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
    _run.log(f'wrote {output}')


if __name__ == '__main__':
  _run.run(main)
