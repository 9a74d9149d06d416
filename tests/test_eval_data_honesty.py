"""The harness reads data honestly: nothing a file holds is silently dropped or misread, and
every refusal or change names the file (and line) it is about."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_agent.catalog.items import genre_key
from genre_agent.errors import CatalogError, ConfigError, GenreError
from genre_eval.datasets import ML100K_GENRES, DatasetConfig, load_dataset
from genre_eval.fixtures import tiny_rows, write_jsonl_dataset
from genre_eval.protocols import ProtocolConfig, build_cases

INTER, ITEMS = tiny_rows(n_users=4, n_items=12, per_user=6)
cli = CliRunner()


def _genres(it: dict) -> list[str]:
    return str(it["metadata"]["genres"]).split("|")


def _sequences() -> dict[str, list[str]]:
    """Each user's items in time order (the fixture's timestamps are distinct per user)."""
    out: dict[str, list[str]] = {}
    for r in sorted(INTER, key=lambda r: (r["user_id"], r["timestamp"])):
        out.setdefault(str(r["user_id"]), []).append(str(r["item_id"]))
    return out


def write_recbole_items(
    d: Path,
    stem: str,
    genre_header: str | None = "class:token_seq",
    titles: dict[str, str] | None = None,
) -> None:
    """``STEM.item`` laid out like RecBole's own ml-100k (genres in ``class``)."""
    head = ["item_id:token", "movie_title:token_seq", "release_year:token"]
    head += [genre_header] if genre_header else []
    lines = []
    for it in ITEMS:
        row = [str(it["id"]), (titles or {}).get(str(it["id"]), str(it["title"])), "1995"]
        row += [" ".join(_genres(it))] if genre_header else []
        lines.append("\t".join(row) + "\n")
    (d / f"{stem}.item").write_text("\t".join(head) + "\n" + "".join(lines))


def write_recbole(
    d: Path,
    stem: str = "ml-100k",
    genre_header: str | None = "class:token_seq",
    item_file: bool = True,
    titles: dict[str, str] | None = None,
) -> Path:
    """RecBole atomic files ``STEM.inter`` (+ ``STEM.item``) in ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{stem}.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(
            f"{r['user_id']}\t{r['item_id']}\t{r['rating']}\t{r['timestamp']}\n" for r in INTER
        )
    )
    if item_file:
        write_recbole_items(d, stem, genre_header, titles)
    return d


# -- 1. the genre column ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", ["class:token_seq", "genre:token_seq", "genres:token_seq", "movie_genre:token_seq"]
)
def test_recbole_genre_column_is_found_by_its_usual_names(tmp_path: Path, header: str) -> None:
    d = write_recbole(tmp_path / "ml-100k", genre_header=header)
    ds = load_dataset(DatasetConfig(kind="recbole", path=d))
    for it in ITEMS:
        got = ds.items[str(it["id"])]
        assert got.metadata["genres"] == "|".join(_genres(it))
        assert got.text == "Genres: " + ", ".join(_genres(it)) + "."
        assert all(got.metadata[genre_key(g)] is True for g in _genres(it))
    assert ds.warnings == []


def test_recbole_genre_field_names_the_column(tmp_path: Path) -> None:
    d = write_recbole(tmp_path / "ml-100k", genre_header="tags:token_seq")
    ds = load_dataset(DatasetConfig(kind="recbole", path=d, genre_field="tags"))
    assert ds.items["7"].metadata["genres"] == ITEMS[6]["metadata"]["genres"]
    # The name with its RecBole type works too; a column the file lacks is an error.
    typed = DatasetConfig(kind="recbole", path=d, genre_field="tags:token_seq")
    assert load_dataset(typed).sha256 == ds.sha256
    with pytest.raises(CatalogError, match=r"ml-100k\.item:1: field 'nope'.*tags:token_seq"):
        load_dataset(DatasetConfig(kind="recbole", path=d, genre_field="nope"))
    with pytest.raises(ValueError, match="genre_field names a column of a RecBole item file"):
        DatasetConfig(kind="jsonl", path=d, genre_field="tags")


def test_recbole_without_a_genre_column_warns_naming_file_and_columns(tmp_path: Path) -> None:
    d = write_recbole(tmp_path / "ml-100k", genre_header="tags:token_seq")
    with pytest.warns(UserWarning, match=r"ml-100k\.item") as caught:
        ds = load_dataset(DatasetConfig(kind="recbole", path=d))
    msg = str(caught[0].message)
    assert "no genre column" in msg and "tags:token_seq" in msg and "genre_field" in msg
    assert ds.warnings == [msg]
    assert all(it.metadata["genres"] == "" for it in ds.items.values())


def test_run_prints_and_records_dataset_warnings(tmp_path: Path) -> None:
    from genre_eval.cli import app

    d = write_recbole(tmp_path / "ml-100k", genre_header="tags:token_seq")
    exp = tmp_path / "exp.toml"
    exp.write_text(
        'name = "w"\nbaselines = ["popularity"]\nks = [1]\nprimary = "ndcg@1"\n'
        'bootstrap = 100\npermutations = 100\n[dataset]\nkind = "recbole"\n'
        f'path = "{d.name}"\n[protocol]\nn_candidates = 4\nmin_history = 3\n'
        '[config.embedder]\nkind = "fake"\n'
    )
    out = tmp_path / "run"
    res = cli.invoke(app, ["run", str(exp), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert f"warning: {d / 'ml-100k.item'}: no genre column" in res.output
    manifest = json.loads((out / "manifest.json").read_text())
    (note,) = manifest["dataset"]["warnings"]
    assert note.startswith(f"{d / 'ml-100k.item'}: no genre column")


# -- 2. a RecBole directory with any file stem -------------------------------------------------


def test_recbole_directory_with_any_stem(tmp_path: Path) -> None:
    d = write_recbole(tmp_path / "data", stem="ml-100k")
    ds = load_dataset(DatasetConfig(kind="recbole", path=d))
    assert ds.name == "ml-100k"
    assert {u: [r.item_id for r in rows] for u, rows in ds.by_user.items()} == _sequences()
    assert ds.items["3"].metadata["genres"] == ITEMS[2]["metadata"]["genres"]


def test_recbole_directory_with_several_inter_files_lists_them(tmp_path: Path) -> None:
    d = write_recbole(tmp_path / "data", stem="a")
    write_recbole(d, stem="b")
    with pytest.raises(CatalogError) as err:
        load_dataset(DatasetConfig(kind="recbole", path=d))
    assert "a.inter" in str(err.value) and "b.inter" in str(err.value)
    # Naming one of them picks it.
    assert load_dataset(DatasetConfig(kind="recbole", path=d / "b.inter")).name == "b"


def test_recbole_directory_without_an_item_file_warns(tmp_path: Path) -> None:
    d = write_recbole(tmp_path / "data", stem="x", item_file=False)
    with pytest.warns(UserWarning, match=r"x\.item"):
        ds = load_dataset(DatasetConfig(kind="recbole", path=d))
    assert set(ds.items) == {str(r["item_id"]) for r in INTER}
    assert ds.items["5"].title == "5" and ds.items["5"].metadata == {"genres": ""}


# -- 3. RecBole's sequential benchmark files ---------------------------------------------------


def write_recbole_seq(d: Path, stem: str = "tiny", augment: bool = True, max_len: int = 0) -> Path:
    """NAME.{train,valid,test}.inter as RecBole's sequential benchmarks ship them: one row per
    (history, next item); ``augment`` writes every prefix to train, ``max_len`` cuts each
    history to its last items (RecBole's MAX_ITEM_LIST_LENGTH)."""
    d.mkdir(parents=True, exist_ok=True)
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    rows: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for user, seq in _sequences().items():
        n = len(seq)
        train = range(1, n - 2) if augment else [n - 3]
        for split, targets in (("train", train), ("valid", [n - 2]), ("test", [n - 1])):
            for t in targets:
                hist = seq[:t][-max_len:] if max_len else seq[:t]
                rows[split].append(f"{user}\t{' '.join(hist)}\t{seq[t]}\n")
    for split, lines in rows.items():
        (d / f"{stem}.{split}.inter").write_text(head + "".join(lines))
    write_recbole_items(d, stem)
    return d


@pytest.mark.parametrize(("augment", "max_len"), [(True, 0), (False, 0), (True, 2)])
def test_recbole_seq_rebuilds_each_users_sequence(
    tmp_path: Path, augment: bool, max_len: int
) -> None:
    d = write_recbole_seq(tmp_path / "seq", augment=augment, max_len=max_len)
    ds = load_dataset(DatasetConfig(kind="recbole-seq", path=d))
    assert ds.name == "tiny" and ds.warnings == []
    assert {u: [r.item_id for r in rows] for u, rows in ds.by_user.items()} == _sequences()
    assert ds.items["3"].metadata["genres"] == ITEMS[2]["metadata"]["genres"]
    # The harness's leave-one-out targets are the benchmark's valid and test targets.
    proto = ProtocolConfig(n_candidates=2, users=100, min_history=1)
    for split in ("valid", "test"):
        lines = (d / f"tiny.{split}.inter").read_text().splitlines()[1:]
        want = {ln.split("\t")[0]: ln.split("\t")[2] for ln in lines}
        assert {c.user_id: c.target for c in build_cases(ds, proto, split)} == want


def test_recbole_seq_history_that_does_not_continue_names_file_and_line(tmp_path: Path) -> None:
    d = write_recbole_seq(tmp_path / "seq")
    valid = d / "tiny.valid.inter"
    lines = valid.read_text().splitlines()
    user, _hist, target = lines[2].split("\t")
    lines[2] = f"{user}\t11 12\t{target}"
    valid.write_text("\n".join(lines) + "\n")
    with pytest.raises(CatalogError, match=rf"{valid}:3: field 'item_id_list'"):
        load_dataset(DatasetConfig(kind="recbole-seq", path=d))


def test_recbole_seq_warns_when_its_split_is_not_the_files(tmp_path: Path) -> None:
    d = write_recbole_seq(tmp_path / "seq")
    test = d / "tiny.test.inter"
    lines = test.read_text().splitlines()
    test.write_text("\n".join(lines[:-1]) + "\n")  # the last user has no test row
    with pytest.warns(UserWarning, match="1 of 4 users do not have exactly one row"):
        load_dataset(DatasetConfig(kind="recbole-seq", path=d / "tiny.train.inter"))
    # Plain interaction files under sequential names are refused, naming what is missing.
    plain = write_recbole(tmp_path / "p", stem="p.train")
    for split in ("valid", "test"):
        (plain / f"p.{split}.inter").write_text((plain / "p.train.inter").read_text())
    with pytest.raises(CatalogError, match=r"p\.train\.inter:1: field '<header>'.*item_id_list"):
        load_dataset(DatasetConfig(kind="recbole-seq", path=plain))


def test_sequential_files_read_as_plain_recbole_are_refused(tmp_path: Path) -> None:
    d = write_recbole_seq(tmp_path / "seq")
    with pytest.raises(CatalogError, match="recbole-seq") as err:
        load_dataset(DatasetConfig(kind="recbole", path=d))
    assert all(f"tiny.{s}.inter" in str(err.value) for s in ("train", "valid", "test"))
    # One such file alone, named or in its own directory, is refused too (not misread).
    one = tmp_path / "one"
    one.mkdir()
    (d / "tiny.test.inter").rename(one / "one.inter")
    (d / "tiny.item").rename(one / "one.item")
    for path in (one, one / "one.inter"):
        with pytest.raises(CatalogError, match=r"one\.inter.*item_id_list.*recbole-seq"):
            load_dataset(DatasetConfig(kind="recbole", path=path))


# -- 4. over-long titles ------------------------------------------------------------------------


def write_ml100k(d: Path, titles: dict[str, str]) -> Path:
    d.mkdir()
    lines = []
    for it in ITEMS:
        flags = ["1" if g in _genres(it) else "0" for g in ML100K_GENRES]
        title = titles.get(str(it["id"]), str(it["title"]))
        lines.append("|".join([str(it["id"]), title, "01-Jan-1995", "", "http://x", *flags]))
    (d / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    (d / "u.data").write_text(
        "".join(
            f"{r['user_id']}\t{r['item_id']}\t{int(r['rating'])}\t{r['timestamp']}\n" for r in INTER
        )
    )
    return d


def write_ml1m(d: Path, titles: dict[str, str]) -> Path:
    d.mkdir()
    (d / "movies.dat").write_text(
        "".join(
            f"{it['id']}::{titles.get(str(it['id']), it['title'])}::{'|'.join(_genres(it))}\n"
            for it in ITEMS
        ),
        encoding="latin-1",
    )
    (d / "ratings.dat").write_text(
        "".join(
            f"{r['user_id']}::{r['item_id']}::{int(r['rating'])}::{r['timestamp']}\n" for r in INTER
        )
    )
    return d


def _recbole_with(d: Path, titles: dict[str, str]) -> Path:
    return write_recbole(d, titles=titles)


# (kind, writer, file holding the items, 1-based line of item "3")
LONG_TITLE_CASES = [
    ("ml-100k", write_ml100k, "u.item", 3),
    ("ml-1m", write_ml1m, "movies.dat", 3),
    ("recbole", _recbole_with, "ml-100k.item", 4),
]


@pytest.mark.parametrize(("kind", "writer", "file", "line"), LONG_TITLE_CASES)
def test_long_title_is_cut_with_a_warning_naming_file_and_line(
    tmp_path: Path, kind: str, writer, file: str, line: int
) -> None:
    d = writer(tmp_path / "d", {"3": "A" * 600})
    with pytest.warns(UserWarning) as caught:
        ds = load_dataset(DatasetConfig(kind=kind, path=d))  # type: ignore[arg-type]
    msg = str(caught[0].message)
    assert msg.startswith(f"{d / file}:{line}: field 'title'") and "600" in msg
    assert ds.items["3"].title == "A" * 499 + "…"
    assert ds.warnings == [msg]


@pytest.mark.parametrize(("kind", "writer", "file", "line"), LONG_TITLE_CASES)
def test_bad_item_row_names_file_and_line(
    tmp_path: Path, kind: str, writer, file: str, line: int
) -> None:
    """Any other invalid item field is a clear error, not a pydantic traceback."""
    d = writer(tmp_path / "d", {})
    lines = (d / file).read_text(encoding="latin-1").splitlines()
    lines[line - 1] = "bad id" + lines[line - 1].removeprefix("3")
    (d / file).write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(CatalogError, match=rf"{d / file}:{line}: field 'id'"):
        load_dataset(DatasetConfig(kind=kind, path=d))  # type: ignore[arg-type]


# -- 5 and 6. eligible users; speed only for LLM variants ----------------------------------------


def _experiment(tmp_path: Path, min_history: int = 3, users: int = 4) -> tuple[Path, Path]:
    """A jsonl dataset in which two users are too short for ``min_history`` 3."""
    data = write_jsonl_dataset(tmp_path / "data", n_users=8, n_items=30, per_user=8)
    rows = [json.loads(x) for x in (data / "interactions.jsonl").read_text().splitlines()]
    keep, seen = [], {"u1": 0, "u2": 0}
    for r in rows:
        if r["user_id"] in seen:
            seen[r["user_id"]] += 1
            if seen[r["user_id"]] > 4:  # 4 rows: 2 before the validation target (< 3)
                continue
        keep.append(r)
    (data / "interactions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    path = tmp_path / "exp.toml"
    path.write_text(f"""
name = "honest"
baselines = ["popularity"]
ks = [1, 5]
primary = "ndcg@5"
bootstrap = 100
permutations = 100
[dataset]
kind = "jsonl"
path = "{data.name}"
[protocol]
kind = "sampled"
n_candidates = 6
users = {users}
min_history = {min_history}
[config.llm]
engine = "fake"
[config.embedder]
kind = "fake"
[config.ranking]
mode = "listwise"
[[variants]]
name = "first"
""")
    return path, tmp_path / "run"


def test_run_reports_eligible_and_dropped_users(tmp_path: Path) -> None:
    from genre_eval.cli import app

    exp, out = _experiment(tmp_path)
    res = cli.invoke(app, ["run", str(exp), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    elig = json.loads((out / "manifest.json").read_text())["eligibility"]
    assert elig == {
        "min_history": 3,
        "users": 8,
        "eligible": 6,
        "dropped": 2,
        "sampled": 4,
        "tied_test": 0,
        "tied_valid": 0,
        "ties": "random",
        "split_seed": 0,
    }
    assert "6 of 8 users eligible (min_history 3), 2 dropped; 4 sampled" in res.output
    assert "ties at the split point: 0 of 6 eligible users at the test target" in res.output


def test_no_eligible_user_is_a_one_line_error(tmp_path: Path) -> None:
    from genre_eval.cli import app

    exp, out = _experiment(tmp_path, min_history=50)
    res = cli.invoke(app, ["run", str(exp), "--out", str(out), "--no-progress"])
    assert isinstance(res.exception, GenreError), res.output
    msg = str(res.exception)
    assert "\n" not in msg
    assert "protocol.min_history = 50" in msg and "none of the 8 users" in msg
    with pytest.raises(ConfigError, match="none of the 8 users"):
        build_cases(
            load_dataset(DatasetConfig(kind="jsonl", path=tmp_path / "data")),
            ProtocolConfig(min_history=50),
            "test",
        )


def test_baselines_report_no_speed(tmp_path: Path) -> None:
    from genre_eval.cli import app

    exp, out = _experiment(tmp_path)
    res = cli.invoke(app, ["run", str(exp), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    systems = json.loads((out / "summary.json").read_text())["systems"]
    assert systems["popularity"]["users_per_min"] is None
    assert systems["first"]["users_per_min"] is not None
    line = next(x for x in res.output.splitlines() if x.strip().startswith("popularity"))
    assert line.endswith("users/min -")
    first = next(x for x in res.output.splitlines() if x.strip().startswith("first"))
    assert "users/min " in first and not first.endswith("users/min -")
    md = (out / "report.md").read_text().splitlines()
    header = next(x for x in md if x.startswith("| system |")).split(" | ")
    col = header.index("users_per_min")
    assert next(x for x in md if x.startswith("| popularity |")).split(" | ")[col] == "-"
    assert next(x for x in md if x.startswith("| first |")).split(" | ")[col] not in {"-", ""}
