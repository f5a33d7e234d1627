r"""Tags text or a CoNLL file with a model trained by experiments.train.

  ./launch.sh predict --model_dir=runs/conll --text="EU rejects German call"
  echo "Paris Hilton visited Paris ." | \
      ./launch.sh predict --model_dir=runs/conll
  ./launch.sh predict --model_dir=runs/conll --input=test.txt --output=pred.txt

Text (--text, or stdin) is split on whitespace (punctuation should be
separated, as in CoNLL); each input line is one sentence; it prints
`token TAG` lines, then the entity spans found with conlleval's chunk rules.
--input reads a CoNLL file (token first; a tag column, if any, is ignored)
and writes `token predicted` lines with a blank line between sentences, to
--output or stdout; whitespace inside a token is written as '_'
(research/tagging.py). --output also takes the tags of --text; an existing
--output is refused unless --overwrite.
"""

import sys

from absl import flags

from experiments import _shared as common
from research import tagging
from research.errors import UserError

_MODEL_DIR = flags.DEFINE_string(
  'model_dir', None, 'The --workdir of an experiments.train run.'
)
_TEXT = flags.DEFINE_string(
  'text', None, 'Text to tag (default: stdin, unless --input).'
)
_INPUT = flags.DEFINE_string(
  'input', None, 'A CoNLL file to tag (token first).'
)
_OUTPUT = flags.DEFINE_string(
  'output', None, "Write 'token predicted' lines to this file."
)


def main(_):
  if not _MODEL_DIR.value:
    raise UserError(
      'pass --model_dir, the --workdir of an experiments.train run'
    )
  if _INPUT.value and _TEXT.value is not None:
    raise UserError('pass either --text or --input, not both')
  output = _OUTPUT.value and tagging.check_output(
    _OUTPUT.value, common.OVERWRITE.value
  )
  model = tagging.load(_MODEL_DIR.value)
  if _INPUT.value:
    sentences = tagging.read_sentences(_INPUT.value, require_tags=False)
    tokens = [s.tokens for s in sentences]
    predicted = tagging.tag(model, sentences)
  else:
    text = _TEXT.value if _TEXT.value is not None else sys.stdin.read()
    tagged = tagging.tag_text(model, text.splitlines())
    tokens = [sentence for sentence, _ in tagged]
    predicted = [tags for _, tags in tagged]
  if output:
    tagging.write_text(output, tagging.conll_text(tokens, predicted))
    common.log(f'wrote {output} ({len(tokens):,} sentences)')
  elif _INPUT.value:
    sys.stdout.write(tagging.conll_text(tokens, predicted))
  else:
    for sentence, tags in zip(tokens, predicted):
      for token, tag in zip(sentence, tags):
        print(f'{token}\t{tag}')
      print('entities:', tagging.entity_spans(sentence, tags))
      print()


if __name__ == '__main__':
  common.run(main)
