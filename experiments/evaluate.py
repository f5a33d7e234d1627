r"""Scores a model trained by experiments.train on a CoNLL file.

  ./launch.sh evaluate --model_dir=runs/conll --data=test.txt
  ./launch.sh evaluate --model_dir=runs/conll --data=test.txt --output=pred.txt
  perl conlleval < pred.txt
  ./launch.sh evaluate --model_dir=runs/conll \
      --data=data/wikigold/wikigold.conll.txt    (another domain, same types)

Prints conlleval's entity precision, recall and F1, overall and per type, and
the token accuracy; then those of the entities whose surface string is (seen) or
is not (unseen) an entity of the model's training split
(research/evaluation/novelty.py), read again from the --data_dir in the run's
flags.txt (skipped, saying why, when that data cannot be read). A single-file
corpus (one file alone in its directory, which train splits by documents) is
scored on its test split unless --split says otherwise; any other file is scored
whole. --output writes `token gold predicted` lines (a blank line between
sentences), the input of the perl conlleval; whitespace inside a token is
written as '_' (research/evaluation/tag_output.py). An existing --output is
refused unless --overwrite. """

import os

from absl import flags

from experiments import _configs
from experiments import _flag_spec
from experiments import _flags
from experiments import _run
from research import workdir as workdir_lib
from research.data import conll as data_lib
from research.errors import UserError
from research.evaluation import novelty
from research.evaluation import tag_output
from research.evaluation import tagging

_flag_spec.use('model_dir', 'o_bias', 'split', 'overwrite')
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
  output = _OUTPUT.value and tag_output.check_output(
    _OUTPUT.value, _flags.OVERWRITE.value
  )
  model = _configs.trained_model()
  split = _configs.corpus_split(_DATA.value, _flags.MODEL_DIR.value)
  entities = _training_entities(_flags.MODEL_DIR.value)
  result = tagging.evaluate_file(model, _DATA.value, split, entities)
  if note := data_lib.empty_tokens_note({'data': result.sentences}):
    _run.log(note)
  num_tokens = sum(len(s.tokens) for s in result.sentences)
  _run.log(
    tag_output.format_scores(
      result.scores,
      f'{_DATA.value}{f" ({split} split)" if split else ""}: '
      f'{len(result.sentences):,} sentences, {num_tokens:,} tokens',
    )
  )
  if output:
    tag_output.write_text(
      output,
      tag_output.conll_text(
        [s.tokens for s in result.sentences],
        [s.tags for s in result.sentences],
        result.predicted,
      ),
    )
    _run.log(f'wrote {output}')


def _training_entities(model_dir):
  """The novelty.Entities of the training split of the data the run in
  model_dir trained on (its flags.txt's --data_dir, relative to the
  repository, as launch.sh runs; or the default data), or None, said in one
  line, when that data cannot be read; the one it reads is said too."""
  given = workdir_lib.saved_flag(model_dir, 'data_dir')
  data_dir = os.path.join(str(_run.REPO), given or _flags.DEFAULT_DATA_DIR)
  try:
    train = data_lib.load_splits(data_dir)['train']
  except UserError as e:
    _run.log(f'no seen/unseen scores: the training data is unreadable ({e})')
    return None
  entities = novelty.training_entities(train)
  _run.log(
    f'seen entities: those among the {len(entities):,} entity strings of '
    f'the training split of {given or _flags.DEFAULT_DATA_DIR}'
  )
  return entities


if __name__ == '__main__':
  _run.run(main)
