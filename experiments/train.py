r"""Trains one window classifier and scores it with conlleval's entity F1.

  ./launch.sh train --workdir=runs/hidden
  ./launch.sh train --data_dir=../shared/data/conll2003 --workdir=runs/conll
  ./launch.sh train --flagfile=experiments/configs/conll_hidden.flags

Writes into --workdir: flags.txt, config.json, metrics.jsonl, result.json,
params.npz, vocab.txt, tags.txt (see research/workdir.py).
"""

from absl import flags

from experiments import common
from research import losses
from research import model as model_lib
from research import pipeline
from research import train as train_lib
from research import workdir as workdir_lib

_DATA_DIR = flags.DEFINE_string(
    'data_dir', common.DEFAULT_DATA_DIR,
    'CoNLL directory (train/dev[/test] files, or one file to split).')
_EMBEDDINGS = flags.DEFINE_string(
    'embeddings', 'glove',
    "'glove' (GloVe 6B 50d, offline), 'random', or a GloVe/word2vec text file.")
_VOCAB = flags.DEFINE_enum(
    'vocab', 'data', ['data', 'pretrained'],
    "'data': training words + dev/test words with a pretrained vector; "
    "'pretrained': also every pretrained word (400k for GloVe).")
_EMBED_DIM = flags.DEFINE_integer('embed_dim', 50, 'd for --embeddings=random.')
_MODEL = flags.DEFINE_enum('model', 'hidden', list(model_lib.MODELS),
                           'softmax: f = Wx + c; hidden: f = W g(Vx + b) + c.')
_NONLINEARITY = flags.DEFINE_enum(
    'nonlinearity', 'tanh', list(model_lib.NONLINEARITIES), 'g of the hidden layer.')
_WINDOW = flags.DEFINE_integer('window', 2, 'Half-width k: 2k+1 words a window.')
_HIDDEN = flags.DEFINE_integer('hidden', 300, 'Hidden units.')
_OBJECTIVE = flags.DEFINE_enum('objective', 'xent', list(losses.OBJECTIVES),
                               'Cross-entropy or multiclass max-margin.')
_L2 = flags.DEFINE_float('l2', 0.0, 'lambda of lambda/2 ||theta||^2.')
_L2_EMBEDDINGS = flags.DEFINE_bool(
    'l2_embeddings', False, 'L2 also covers word and casing vectors.')
_L2_BIASES = flags.DEFINE_bool('l2_biases', False, 'L2 also covers biases.')
_DROPOUT = flags.DEFINE_float('dropout', 0.0,
                              'Dropout rate on x and the hidden layer.')
_FREEZE = flags.DEFINE_bool('freeze_embeddings', False,
                            'Keep the word vectors fixed.')
_OPTIMIZER = flags.DEFINE_enum('optimizer', 'adam', list(train_lib.OPTIMIZERS),
                               'Optimizer.')
_LR = flags.DEFINE_float('lr', 1e-3, 'Learning rate.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 256, 'Windows per step.')
_EPOCHS = flags.DEFINE_integer('epochs', 10, 'Passes over the training data.')
_EVAL_EVERY = flags.DEFINE_integer('eval_every', 0,
                                   'Evaluate every N steps (0: every epoch).')
_SPARSE = flags.DEFINE_bool('sparse', True,
                            'Update only the rows of L a batch touches.')
_GRAD = flags.DEFINE_enum('grad', 'autodiff', ['autodiff', 'manual'],
                          'jax.grad, or the hand-derived backprop.')
_SEED = flags.DEFINE_integer('seed', 0, 'Initialization and shuffling seed.')
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Output directory (default runs/train-<time>).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace the files of an earlier run in --workdir.')


def main(argv):
  if len(argv) > 1:
    raise flags.Error(f'unexpected arguments: {" ".join(argv[1:])}')
  workdir = workdir_lib.prepare(_WORKDIR.value or common.default_workdir('train'),
                                _OVERWRITE.value)
  (workdir / 'flags.txt').write_text(flags.FLAGS.flags_into_string())
  log = common.log
  ds = pipeline.load_dataset(_DATA_DIR.value, _EMBEDDINGS.value, _WINDOW.value,
                             _VOCAB.value, _EMBED_DIM.value, seed=_SEED.value,
                             log=log)
  model_cfg = model_lib.ModelConfig(_MODEL.value, _NONLINEARITY.value,
                                    _WINDOW.value, _HIDDEN.value, _DROPOUT.value)
  cfg = train_lib.TrainConfig(
      _OBJECTIVE.value, _OPTIMIZER.value, _BATCH_SIZE.value,
      _L2_EMBEDDINGS.value, _L2_BIASES.value, _FREEZE.value, _SPARSE.value,
      _GRAD.value)
  if cfg.grad == 'manual' and model_cfg.dropout > 0:
    raise flags.ValidationError('--grad=manual has no dropout; use --dropout=0')
  metrics_file = workdir_lib.JsonlWriter(workdir / 'metrics.jsonl')
  params, result = pipeline.train_and_evaluate(
      ds, model_cfg, cfg, train_lib.Hyper(_LR.value, _L2.value),
      epochs=_EPOCHS.value, seed=_SEED.value, eval_every=_EVAL_EVERY.value,
      eval_train=True, on_eval=metrics_file.write, log=log)
  metrics_file.close()
  workdir_lib.write_json(workdir / 'result.json', result)
  workdir_lib.save_model(workdir, params, ds.vocab.words, ds.tags, {
      'model': model_cfg._asdict(), 'train': cfg._asdict(),
      'known_words': 'pretrained_words.txt' if ds.vocab.known else None})
  if ds.vocab.known:  # the normalization needs the pretrained word set
    (workdir / 'pretrained_words.txt').write_text(
        '\n'.join(sorted(ds.vocab.known)) + '\n')
  for split in ('dev', 'test'):
    if split in result:
      r = result[split]
      log(f'{split}: precision {r["precision"]:.2f} recall {r["recall"]:.2f} '
          f'F1 {r["f1"]:.2f} accuracy {r["accuracy"]:.2f}')
  log(f'{result["train_windows_per_sec"]:,.0f} training windows/s '
      f'({result["train_seconds"]:.1f}s training, '
      f'{result["compile_seconds"]:.1f}s compiling); wrote {workdir}')


if __name__ == '__main__':
  common.run(main)
