"""Readers of prompt-pair files: JSONL (pathpatch's own), EAP-IG's CSV and auto-circuit's JSON, each into the
same records (one per prompt pair, each knowing its file and line) so that one converter builds the task.

Readers check the file's structure only (a JSON value per line, the columns a format needs); what each field
holds is checked when records become prompts (``records``), where a message can name file, line and field.
"""

import csv
import json
import math
import re
from pathlib import Path

from pathpatch.errors import InputError, listed
from pathpatch.files import read_text_limited
from pathpatch.task.records import Record, Records, brief, check_metric, describe, is_int

PROMPT_FIELDS = ("clean", "corrupt", "answer", "wrong_answer", "positions", "features", "labels")


HEADER_FIELDS = ("name", "metric", "corruption")


EAP_COLUMNS = {"clean": "clean", "corrupt": "corrupted", "answer": "correct_idx", "wrong_answer": "incorrect_idx"}


AUTO_FIELDS = {"clean": "clean", "corrupt": "corrupt", "answer": "answers", "wrong_answer": "wrong_answers"}


FILE_FORMS = (
    "NAME.jsonl (one prompt pair per line), NAME.csv (EAP-IG: clean, corrupted, correct_idx, incorrect_idx), "
    "NAME.json (auto-circuit: {\"prompts\": [...]}), or a factory path/to/file.py:function or package.module:function"
)


def read_jsonl(path: Path) -> Records:
    """Read a JSONL file: an optional header line, then one prompt object per line; blank lines skipped."""
    header, records = None, []
    for number, line in enumerate(read_text_limited(path, "prompt").split("\n"), start=1):
        stripped, where = line.strip(), f"{path}:{number}"
        if not stripped:
            continue
        if stripped.startswith("#"):
            raise InputError(f"{where}: a '#' comment, but JSONL has no comments; delete the line (blank lines are skipped).")
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise InputError(f"{where}: invalid JSON ({error.msg} at column {error.colno}); write one JSON object per line.") from None
        except ValueError as error:  # an integer of more than 4300 digits
            raise InputError(f"{where}: invalid JSON ({str(error).split(';')[0]}); give token ids as this model's vocabulary has them.") from None
        if not isinstance(value, dict):
            raise InputError(f"{where}: {describe(value)} is not a prompt object; "
                             "write {\"clean\": ..., \"corrupt\": ..., \"answer\": ..., \"wrong_answer\": ...}.")
        if "task" in value:
            if header is not None or records:
                raise InputError(f"{where}: field 'task': a header must be the first line of the file; move it there.")
            header = _header(value, where)
            continue
        unknown = sorted(set(value) - set(PROMPT_FIELDS))
        if unknown:
            raise InputError(f"{where}: field {brief(unknown[0])}: unknown; prompt fields are {', '.join(PROMPT_FIELDS)}.")
        records.append(Record(where, value))
    return Records(records, header)


def _header(value: dict, where: str) -> Record:
    """Check a header line ``{"task": {"name": ..., "metric": ..., "corruption": ...}}``."""
    task = value["task"]
    if len(value) != 1 or not isinstance(task, dict):
        raise InputError(f"{where}: field 'task': a header is {{\"task\": {{\"name\": ..., \"metric\": ...}}}} alone on its line.")
    for key, item in task.items():
        if key not in HEADER_FIELDS or not isinstance(item, str):
            raise InputError(f"{where}: field {brief('task.' + key)}: give string values for {', '.join(HEADER_FIELDS)} only.")
    check_metric(task.get("metric"), f"{where}: field 'metric'")
    return Record(where, task)


def read_eap_csv(path: Path) -> Records:
    """Read EAP-IG's CSV as ``EAPDataset`` does: ``pd.read_csv``; ``*_idx`` are one token id each."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={"clean": str, "corrupted": str}, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}:1: not a readable CSV ({error}); save it with EAP-IG's columns "
                         f"{', '.join(EAP_COLUMNS.values())}.") from None
    missing = [column for column in EAP_COLUMNS.values() if column not in frame.columns]
    if missing:
        greater_than = " (a 'label' column is EAP-IG's greater-than format, scored by probability difference: not supported)"
        hint = greater_than if "label" in frame.columns else ""
        raise InputError(f"{path}:1: field '{missing[0]}': column missing{hint}; EAP-IG's CSV has columns "
                         f"{', '.join(EAP_COLUMNS.values())}, found {listed(frame.columns, 10, brief)}.")
    columns = {key: frame[column].tolist() for key, column in EAP_COLUMNS.items()}
    records = []
    for row, line in enumerate(_csv_lines(path, len(frame))):
        record = Record(f"{path}:{line}", {}, dict(EAP_COLUMNS))
        for key, values in columns.items():
            value = values[row]
            if isinstance(value, float) and math.isnan(value):
                continue
            if key in ("answer", "wrong_answer"):
                value = _csv_id(value)
                if not is_int(value):
                    raise record.fail(key, f"got {describe(value)}; EAP-IG's {EAP_COLUMNS[key]} is one token id (an integer).")
            record.fields[key] = value
        records.append(record)
    return Records(records, prepend_bos=True, vectors=False)


def _csv_id(value: object) -> object:
    """Return a CSV cell as an int where it spells one (pandas reads ``52.0`` or ``'52'`` in mixed columns)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int(value) if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value) else value


def _csv_lines(path: Path, count: int) -> list[int]:
    """Return the 1-based line each data row starts on (quoted fields may span lines)."""
    lines = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        previous = reader.line_num
        for row in reader:
            if row:
                lines.append(previous + 1)
            previous = reader.line_num
    return lines if len(lines) == count else [row + 2 for row in range(count)]


def read_auto_circuit(path: Path) -> Records:
    """Read auto-circuit's dataset JSON: ``{"prompts": [{"clean", "corrupt", "answers", "wrong_answers"}]}``."""
    text = read_text_limited(path, "prompt")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}:{error.lineno}: invalid JSON ({error.msg} at column {error.colno}); fix the syntax.") from None
    except ValueError as error:  # an integer of more than 4300 digits
        raise InputError(f"{path}: invalid JSON ({str(error).split(';')[0]}); give token ids as this model's vocabulary has them.") from None
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, list):
        raise InputError(f"{path}:1: field 'prompts': missing or not a list; auto-circuit's dataset JSON is "
                         "{\"prompts\": [{\"clean\": ..., \"corrupt\": ..., \"answers\": [...], \"wrong_answers\": [...]}]}.")
    records = []
    for index, (item, line) in enumerate(zip(prompts, _json_item_lines(text, prompts))):
        record = Record(f"{path}:{line or '?'}: prompts[{index}]", {}, dict(AUTO_FIELDS))
        if not isinstance(item, dict):
            raise InputError(f"{record.where}: {describe(item)} is not a prompt object with clean, corrupt, answers, wrong_answers.")
        for key, label in AUTO_FIELDS.items():
            if label not in item:
                raise record.fail(key, "missing; auto-circuit prompts need clean, corrupt, answers and wrong_answers.")
            value = item[label]
            if key in ("answer", "wrong_answer") and isinstance(value, list):
                if len(value) != 1:
                    raise record.fail(key, f"lists {len(value)} tokens; pathpatch takes one answer and one wrong answer per "
                                      "read position (auto-circuit averages over the list), so keep exactly one.")
                value = value[0]
            record.fields[key] = value
        records.append(record)
    return Records(records, prepend_bos=True, vectors=False)


def _json_item_lines(text: str, prompts: list) -> list[int | None]:
    """Return the 1-based line where each entry of the ``"prompts"`` list starts (None where not found)."""
    found, decoder, skip = [], json.JSONDecoder(), re.compile(r"[\s,]*")
    match = re.search(r'"prompts"\s*:\s*\[', text)
    index, line, counted = (match.end() if match else len(text)), 1, 0
    while match and len(found) < len(prompts):
        index = skip.match(text, index).end()
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            break
        if value != prompts[len(found)]:
            break
        line, counted = line + text.count("\n", counted, index), index
        found.append(line)
        index = end
    return found + [None] * (len(prompts) - len(found))
