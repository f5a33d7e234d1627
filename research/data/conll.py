"""CoNLL-format NER data: reading, splits and tags.

Pipeline: `load_splits` -> `check_tags`, then research/data/vocab.py turns the
sentences into word ids and windows (`Vocab.build` -> `make_windows`).
Every problem a user can fix (bad paths, malformed files) raises `UserError`
with a one-line message of the form `path:LINE: what is wrong; what to do`.
"""

import dataclasses
import pathlib
import re

from research.errors import UserError

DOCSTART = '-DOCSTART-'
# What a token that is empty or only whitespace in the file is read as (a
# tab-separated line '\tO' or ' \tB-PER'; a whitespace-separated line whose
# token is U+00A0).
EMPTY_TOKEN = '<empty>'

SPLIT_NAMES = {
  'train': ('train.txt', 'eng.train', 'train.conll'),
  'dev': ('valid.txt', 'dev.txt', 'eng.testa', 'dev.conll', 'valid.conll'),
  'test': ('test.txt', 'eng.testb', 'test.conll'),
}


_TAG = re.compile(r'O|[BIES]-.+')
_BLANKS = ' \t\r\f\v'
_COLUMN_SEP = re.compile(r'[ \t\r\f\v]+')
_SPACES = ' \r\f\v'  # The blanks other than the tab.


@dataclasses.dataclass(frozen=True)
class Sentence:
  """A sentence with one tag per token.

  Attributes:
    tokens: The words.
    tags: One tag per token, as written in the file.
    path: The file the sentence came from ('' if built in code).
    lines: The 1-based line number of each token in `path` (or empty).
    empty: The indices of the tokens that were empty or whitespace in the
      file and are read as EMPTY_TOKEN.
    document: The index of its document in `path` (-DOCSTART- lines).
  """

  tokens: tuple[str, ...]
  tags: tuple[str, ...]
  path: str = ''
  lines: tuple[int, ...] = ()
  empty: tuple[int, ...] = ()
  document: int = 0

  def __post_init__(self):
    if len(self.tokens) != len(self.tags):
      raise ValueError(f'{len(self.tokens)} tokens but {len(self.tags)} tags')
    if self.lines and len(self.lines) != len(self.tokens):
      raise ValueError(f'{len(self.tokens)} tokens but {len(self.lines)} lines')

  def where(self, i):
    """Returns 'path:LINE:' for token i, or as much of it as is known."""
    if self.lines:
      return f'{self.path}:{self.lines[i]}:'
    return f'{self.path}:' if self.path else '(sentence built in code):'


def _decode(path):
  """Returns the text of `path`; UserError if it is unreadable or not UTF-8."""
  try:
    data = pathlib.Path(path).read_bytes()
  except FileNotFoundError:
    raise UserError(f'{path}: file not found; check the path') from None
  except OSError as e:
    raise UserError(
      f'{path}: cannot read file ({e.strerror}); check the path '
      'and its permissions'
    ) from None
  return decode(data, path)


def decode(data, where):
  """Returns the bytes `data` as text (UTF-8, a leading BOM dropped).

  Raises:
    UserError: they are not UTF-8; `where` (a path, '<stdin>') names them.
  """
  try:
    return data.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    line = data.count(b'\n', 0, e.start) + 1
    column = e.start - (data.rfind(b'\n', 0, e.start) + 1) + 1
    raise UserError(
      f'{where}:{line}: not valid UTF-8 (byte '
      f'0x{data[e.start]:02x} at column {column}); save it as UTF-8'
    ) from None


class _DocumentCollector:
  """Gathers token lines into `Sentence`s and sentences into documents.

  Attributes:
    path: The file read (stored in every `Sentence`).
    documents: The finished documents, each a list of `Sentence`s.
  """

  def __init__(self, path):
    self.path = path
    self.documents, self.sentences = [], []
    self.tokens, self.tags, self.lines, self.empty = [], [], [], []

  def add(self, token, tag, number):
    """Adds a token of line `number`; an empty/blank one as EMPTY_TOKEN."""
    if not token.strip():
      token = EMPTY_TOKEN
      self.empty.append(len(self.tokens))
    self.tokens.append(token)
    self.tags.append(tag)
    self.lines.append(number)

  def end_sentence(self):
    """Closes the current sentence, if it has tokens."""
    if self.tokens:
      self.sentences.append(
        Sentence(
          tuple(self.tokens),
          tuple(self.tags),
          self.path,
          tuple(self.lines),
          tuple(self.empty),
          len(self.documents),
        )
      )
      for part in (self.tokens, self.tags, self.lines, self.empty):
        part.clear()

  def end_document(self):
    """Closes the current sentence and document; empty documents are
    dropped."""
    self.end_sentence()
    if self.sentences:
      self.documents.append(list(self.sentences))
      self.sentences.clear()


def _token_columns(line, path, number, tabbed, first):
  """The columns of token line `line` (line `number` of `path`).

  A tab-separated file (`tabbed`) is split on tabs, spaces around a column
  dropped; any other on runs of blanks. `first` is (line number, column
  count) of the first token line (None if this is it).

  Raises:
    UserError: The file is tab-separated but `line` has no tab.
  """
  if tabbed:
    if '\t' not in line:
      raise UserError(
        f'{path}:{number}: line has no tab-separated tag column, but the '
        f'file is tab-separated (its first token line, line {first[0]}, '
        f"has tabs): {line!r}; write 'TOKEN<tab>...<tab>TAG' on every "
        'token line'
      )
    return [column.strip(_SPACES) for column in line.split('\t')]
  return _COLUMN_SEP.split(line.lstrip(_BLANKS))


def _check_column_count(
  columns, line, path, number, tabbed, first, require_tags
):
  """Checks the number of `columns` of token line `number`.

  Raises:
    UserError: There is a single column and `require_tags`, or the count
      differs from that of the first token line (`first`: its line number
      and column count, None if this is it).
  """
  if len(columns) == 1 and require_tags:
    raise UserError(
      f'{path}:{number}: line has only one column (no tag '
      f"column): {line!r}; write 'TOKEN ... TAG' on each line"
    )
  if first is not None and len(columns) != first[1]:
    raise UserError(
      f'{path}:{number}: line has {len(columns)} '
      f'{"tab-separated " if tabbed else ""}columns but the first token '
      f'line (line {first[0]}) has {first[1]}; give every token line the '
      'same columns'
    )


def _token_tag(columns, path, number):
  """The tag of a token line: its last column, or 'O' if it has only one.

  Raises:
    UserError: The tag is not 'O' or B-/I-/E-/S- followed by a type.
  """
  tag = columns[-1] if len(columns) > 1 else 'O'
  if not _TAG.fullmatch(tag):
    raise UserError(
      f"{path}:{number}: bad tag {tag!r}; tags must be 'O' or "
      'B-/I-/E-/S- followed by a type (e.g. B-PER) in the last '
      'column'
    )
  return tag


def read_conll(path, require_tags=True):
  """Reads a CoNLL-format NER file.

  The token is the first column and the tag the last; any columns between
  (POS, chunk) are ignored. A file whose first token line holds a tab is
  tab-separated: every token line is split on tabs only (so tokens may hold
  spaces, e.g. 'New York'), and spaces around a column are dropped. Any other
  file is split on runs of blanks. A token that is empty or only whitespace
  ('\\tO' in a tab-separated file) is read as EMPTY_TOKEN, and its index is
  kept in `Sentence.empty` (see `empty_tokens_note`). Blank lines separate
  sentences; a line whose first column is -DOCSTART- starts a new document
  (sentences before the first -DOCSTART- form a document too; empty documents
  are dropped). Any tag set in IOB1, IOB2 or IOBES (e.g. WNUT-17's
  B-creative-work) is accepted as-is.

  Args:
    path: The file to read.
    require_tags: If False, a file whose token lines have a single column
      (tokens only, e.g. text to tag) is accepted, each tag read as 'O'.

  Returns:
    Documents, each a list of `Sentence`s.

  Raises:
    UserError: The file is missing or not UTF-8, a line has no tag column or a
      different number of columns than the first token line, a line of a
      tab-separated file has no tab, a tag is not 'O' or B-/I-/E-/S- followed
      by a type, or the file holds no sentences.
  """
  text = _decode(path)
  path = str(path)
  collector = _DocumentCollector(path)
  first = None  # (line number, column count) of the first token line.
  tabbed = False  # Whether the first token line holds a tab.
  for number, line in enumerate(text.split('\n'), start=1):
    # Only the right end is stripped: in a tab-separated file a line may start
    # with the tab that ends an empty token.
    line = line.rstrip(_BLANKS)
    if not line.strip(_BLANKS):
      collector.end_sentence()
      continue
    if _COLUMN_SEP.split(line.lstrip(_BLANKS))[0] == DOCSTART:
      collector.end_document()
      continue
    if first is None:
      tabbed = '\t' in line
    columns = _token_columns(line, path, number, tabbed, first)
    _check_column_count(
      columns, line, path, number, tabbed, first, require_tags
    )
    if first is None:
      first = (number, len(columns))
    collector.add(columns[0], _token_tag(columns, path, number), number)
  collector.end_document()
  if not collector.documents:
    raise UserError(
      f'{path}: no sentences in the file (empty split); give it '
      "'TOKEN ... TAG' lines with blank lines between sentences"
    )
  return collector.documents


def count_empty_tokens(splits):
  """Counts the tokens read as EMPTY_TOKEN.

  Args:
    splits: Sentences per split, as returned by `load_splits` (a sentence
      listed under several keys counts once).

  Returns:
    The number of tokens that were empty or whitespace in their files.
  """
  unique = {id(s): s for sentences in splits.values() for s in sentences}
  return sum(len(s.empty) for s in unique.values())


def empty_tokens_note(splits):
  """Returns a one-line note on the empty tokens read, or '' if none.

  Args:
    splits: Sentences per split, as returned by `load_splits`.

  Returns:
    E.g. '3 empty tokens read as <empty> (the first at train.txt:12)', with
    the file's full path.
  """
  count = count_empty_tokens(splits)
  if not count:
    return ''
  where = next(
    s.where(s.empty[0])
    for sentences in splits.values()
    for s in sentences
    if s.empty
  )
  noun = 'token' if count == 1 else 'tokens'
  return (
    f'{count:,} empty {noun} read as {EMPTY_TOKEN} (the first at '
    f'{where.rstrip(":")})'
  )


def find_split_files(data_dir):
  """Finds the split files of a corpus directory.

  Recognized names: train: train.txt, eng.train, train.conll; dev: valid.txt,
  dev.txt, eng.testa, dev.conll, valid.conll; test: test.txt, eng.testb,
  test.conll. If none of those exist and the directory holds exactly one
  *.txt/*.conll file, that file is a single-file corpus (see `split_documents`),
  as is a .txt/.conll file given itself.

  Args:
    data_dir: The corpus directory (or a single-file corpus).

  Returns:
    A dict with keys among 'train', 'dev' and 'test', or {'single': path} for a
    single-file corpus, or {} if nothing is recognized.

  Raises:
    UserError: `data_dir` is not a directory, or two files name the same split.
  """
  data_dir = pathlib.Path(data_dir)
  if data_dir.is_file() and data_dir.suffix in ('.txt', '.conll'):
    return {'single': data_dir}  # a single-file corpus named itself
  if not data_dir.is_dir():
    raise UserError(
      f'{data_dir}: data directory not found; pass the directory '
      'holding train.txt and valid.txt (or one .txt/.conll file)'
    )
  found = {}
  for split, names in SPLIT_NAMES.items():
    paths = [data_dir / name for name in names if (data_dir / name).is_file()]
    if len(paths) > 1:
      raise UserError(
        f'{paths[1]}: {split} split given twice (also '
        f'{paths[0].name}); keep only one of them'
      )
    if paths:
      found[split] = paths[0]
  if found:
    return found
  candidates = sorted(
    p
    for p in data_dir.iterdir()
    if p.is_file() and p.suffix in ('.txt', '.conll')
  )
  if len(candidates) == 1:
    return {'single': candidates[0]}
  return {}


def is_single_file_corpus(path):
  """Whether the file `path` is a single-file corpus: the one file of its
  directory that `load_splits` splits by documents (`split_documents`)."""
  path = pathlib.Path(path)
  if not path.is_file():
    return False
  found = find_split_files(path.parent)
  return 'single' in found and found['single'].resolve() == path.resolve()


SPLIT_RULE = {
  'train': 'i % 10 < 8',
  'dev': 'i % 10 == 8',
  'test': 'i % 10 == 9',
}  # of document i, by split_documents' default period


def split_documents(documents, dev_every=10):
  """Splits a single-file corpus by documents, deterministically.

  Document i (0-based) goes to 'dev' if i % dev_every == dev_every - 2, to
  'test' if i % dev_every == dev_every - 1, else to 'train' (80/10/10 for the
  default 10, interleaved through the file).

  Args:
    documents: Documents as returned by `read_conll`.
    dev_every: The period of the split; at least 3.

  Returns:
    {'train': [...], 'dev': [...], 'test': [...]}, each a list of documents.
  """
  if dev_every < 3:
    raise ValueError(f'dev_every must be at least 3, got {dev_every}')
  splits = {'train': [], 'dev': [], 'test': []}
  for i, document in enumerate(documents):
    r = i % dev_every
    if r == dev_every - 2:
      splits['dev'].append(document)
    elif r == dev_every - 1:
      splits['test'].append(document)
    else:
      splits['train'].append(document)
  return splits


def load_splits(data_dir):
  """Reads the sentences of each split of a corpus directory.

  Args:
    data_dir: The corpus directory (see `find_split_files`).

  Returns:
    {'train': [...], 'dev': [...]} and 'test' when present (always present for
    a single-file corpus), each a list of `Sentence`s.

  Raises:
    UserError: The directory is missing, holds no recognizable files, has a
      train file but no dev file (or the reverse), or a split is empty; or any
      error from `read_conll`.
  """
  files = find_split_files(data_dir)
  if not files:
    accepted = '; '.join(
      f'{split}: {", ".join(names)}' for split, names in SPLIT_NAMES.items()
    )
    raise UserError(
      f'{data_dir}: no recognizable data files; name them '
      f'({accepted}) or leave exactly one .txt/.conll file'
    )
  if 'single' in files:
    path = files['single']
    documents = read_conll(path)
    splits = split_documents(documents)
    for split, docs in splits.items():
      if not docs:
        raise UserError(
          f'{path}: empty split {split!r}: the single-file corpus has only '
          f'{len(documents)} document(s) ({DOCSTART} lines); 10 are needed '
          'for an 80/10/10 split; add documents or give separate train and '
          'dev files'
        )
    return {
      split: [s for doc in docs for s in doc] for split, docs in splits.items()
    }
  if 'train' not in files and 'dev' not in files:
    raise UserError(
      f'{files["test"]}: found a test file but no train or dev '
      f'file in {data_dir}; add train.txt and valid.txt'
    )
  for split, other in (('train', 'dev'), ('dev', 'train')):
    if split not in files:
      raise UserError(
        f'{files[other]}: found a {other} file but no {split} '
        f'file in {data_dir}; add one named '
        f'{" or ".join(SPLIT_NAMES[split])}'
      )
  return {
    split: [s for doc in read_conll(path) for s in doc]
    for split, path in files.items()
  }


def check_tags(splits):
  """Returns the tag list of the training split, checking the other splits.

  Args:
    splits: Sentences per split, as returned by `load_splits`.

  Returns:
    'O' first, then the other training tags sorted.

  Raises:
    UserError: A tag in another split never occurs in 'train'.
  """
  seen = {tag for s in splits['train'] for tag in s.tags}
  for split, sentences in splits.items():
    if split == 'train':
      continue
    for s in sentences:
      for i, tag in enumerate(s.tags):
        if tag not in seen:
          raise UserError(
            f'{s.where(i)} tag {tag!r} in the {split} split '
            'never occurs in train; fix the tag or add it to '
            'train'
          )
  return ['O'] + sorted(seen - {'O'})
