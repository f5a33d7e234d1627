r"""Trains one window classifier and scores it with conlleval's entity F1.

  ./launch.sh train --workdir=runs/hidden
  ./launch.sh train --data_dir=../shared/data/conll2003 --workdir=runs/conll
  ./launch.sh train --flagfile=experiments/configs/conll_hidden.flags

Writes into --workdir: flags.txt, config.json, metrics.jsonl, result.json,
params.npz, vocab.txt, tags.txt, pretrained_words.txt, checkpoints/
(research/workdir.py), and examples.md: the decks' ambiguous sentences
tagged by the trained model. A killed run continues where its newest
checkpoint left it with the same command plus --resume.
The data, model and optimizer flags are in experiments/_shared.py.
"""

from absl import flags

from experiments import _shared as common
from research import crf
from research import engine
from research import losses
from research import ner
from research import tagging
from research import workdir as workdir_lib

_OBJECTIVE = flags.DEFINE_enum(
  'objective',
  'xent',
  list(losses.OBJECTIVES) + list(crf.OBJECTIVES),
  'Window-level cross-entropy or multiclass max-margin; sentence-level CRF '
  '(log-likelihood of the tag path) or structured max-margin.',
)
_SELECT = flags.DEFINE_enum(
  'select',
  'last',
  list(ner.SELECTIONS),
  'Keep the final parameters, or those of the evaluation with the best dev F1.',
)
_ENSEMBLE = flags.DEFINE_integer(
  'ensemble',
  1,
  'Members (seeds seed, seed+1, ...) trained as one program; their scores '
  'are averaged.',
  lower_bound=1,
)
_L2 = flags.DEFINE_float(
  'l2', 0.0, 'lambda of lambda/2 ||theta||^2.', lower_bound=0.0
)
_SEED = flags.DEFINE_integer('seed', 0, 'Initialization and shuffling seed.')


def main(_):
  workdir = common.workdir('train', checkpoints=True)
  log = common.log
  ds = common.load_dataset(seed=_SEED.value)
  common.check_batch_size(ds)
  model_cfg = common.model_config()
  cfg = common.train_config(objective=_OBJECTIVE.value)
  common.save_flags(workdir)
  checkpoint = common.checkpointer(workdir)
  metrics_file = workdir_lib.JsonlWriter(workdir / 'metrics.jsonl')
  params, result = ner.train_and_evaluate(
    ds,
    model_cfg,
    cfg,
    engine.Hyper(common.LR.value, _L2.value),
    epochs=common.EPOCHS.value,
    seed=_SEED.value,
    eval_every=common.EVAL_EVERY.value,
    eval_train=True,
    on_eval=metrics_file.write,
    log=log,
    decode=common.DECODE.value,
    select=_SELECT.value,
    ensemble=_ENSEMBLE.value,
    checkpoint=checkpoint,
  )
  metrics_file.close()
  workdir_lib.write_json(workdir / 'result.json', result)
  workdir_lib.save_model(
    workdir,
    params,
    ds.vocab,
    ds.tags,
    ner.model_config_json(ds, model_cfg, cfg, common.DECODE.value),
  )
  (workdir / 'examples.md').write_text(
    tagging.examples_markdown(tagging.load(workdir))
  )
  for split in ('dev', 'test'):
    if split in result:
      r = result[split]
      log(
        f'{split}: precision {r["precision"]:.2f} recall {r["recall"]:.2f} '
        f'F1 {r["f1"]:.2f} accuracy {r["accuracy"]:.2f}'
      )
  unit = 'words' if result['trained_on'] == 'sentences' else 'windows'
  log(
    f'{result["train_windows_per_sec"]:,.0f} training {unit}/s '
    f'({result["train_seconds"]:.1f}s training, '
    f'{result["compile_seconds"]:.1f}s compiling); wrote {workdir}'
  )


if __name__ == '__main__':
  common.run(main)
