"""Literature: bioRxiv / medRxiv preprints as DataFrames -- ``scllm papers search`` and ``show``,
the same Rust client (Europe PMC search, api.biorxiv.org, JATS full text), called in-process.

Servers, cache and pacing as the CLI: ``SCLLM_EUROPEPMC_URL``, ``SCLLM_BIORXIV_API_URL``,
``SCLLM_BIORXIV_URL``, ``SCLLM_CACHE_DIR`` and ``SCLLM_MAILTO`` are read from the environment,
and every keyword below overrides them for one call. ``deadline`` (seconds, 0 for none) bounds
a call's waiting and retries; the call holds no lock Python needs meanwhile, but Ctrl-C is seen
only when it returns.

Errors raise with the CLI's one-line message: ``ValueError`` for a DOI that is not one or that
no server knows and for an answer of the wrong shape, ``ConnectionError`` for a server that
cannot be reached, refuses, rate-limits or misses the deadline.

Example::

    import scllm
    hits = scllm.papers.search("single-cell foundation model", limit=20)
    versions = scllm.papers.show(hits.doi[0])
    versions, text = scllm.papers.show(hits.doi[0], full_text=True)
    text[text.kind == "paragraph"].head()
"""

import json
from typing import Any, Dict, List, Optional, Tuple, Union

import pandas as pd

from . import _scllm

# one row per preprint version, in this order
COLUMNS = [
    "doi",
    "version",
    "date",
    "server",
    "category",
    "title",
    "authors",
    "corresponding_author",
    "article_type",
    "abstract",
    "license",
    "published_doi",
    "published_journal",
    "jatsxml_url",
    "europepmc_id",
    "url",
]


# the client settings every lookup takes, as keyword arguments
_CLIENT = ("europepmc_url", "biorxiv_api_url", "biorxiv_url", "cache_dir", "no_cache",
           "min_interval_ms", "deadline")


def _client(args: Dict[str, Any]) -> Dict[str, Any]:
    """The client settings among a lookup's arguments, as the native call takes them."""
    out = {k: args[k] for k in _CLIENT}
    if out["cache_dir"] is not None:
        out["cache_dir"] = str(out["cache_dir"])
    return out


def _frame(papers: List[Dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for p in papers:
        row = {c: p.get(c) for c in COLUMNS}
        row["authors"] = "; ".join(p.get("authors") or [])
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["version"] = df["version"].astype("Int64")
    return df


def _sections(outcome: Optional[Dict[str, Any]]) -> pd.DataFrame:
    """The full text as rows: each paragraph under its section heading, then figure and table
    captions and references; ``attrs`` says where it came from (or where the PDF is)."""
    cols = ["kind", "heading", "level", "text"]
    rows: List[Tuple[str, str, int, str]] = []
    attrs: Dict[str, Any] = {}
    if outcome is not None and outcome.get("status") == "jats":
        attrs["source"] = outcome.get("source")
        for s in outcome.get("sections", []):
            for para in s.get("paragraphs", []):
                rows.append(("paragraph", s.get("heading", ""), s.get("level", 1), para))
        for f in outcome.get("figures", []):
            rows.append(("figure", f.get("label") or f.get("id", ""), 0, f.get("caption", "")))
        for t in outcome.get("tables", []):
            rows.append(("table", t.get("label") or t.get("id", ""), 0, t.get("caption", "")))
        for r in outcome.get("references", []):
            rows.append(("reference", r.get("label") or r.get("id", ""), 0, r.get("text", "")))
    elif outcome is not None:
        attrs.update({k: v for k, v in outcome.items() if k != "status"})
        attrs["source"] = outcome.get("status")
    df = pd.DataFrame(rows, columns=cols)
    df.attrs.update(attrs)
    return df


def search(
    query: str,
    *,
    limit: int = 25,
    html_search: bool = False,
    europepmc_url: Optional[str] = None,
    biorxiv_api_url: Optional[str] = None,
    biorxiv_url: Optional[str] = None,
    cache_dir: Optional[str] = None,
    no_cache: bool = False,
    min_interval_ms: int = 1000,
    deadline: int = 120,
) -> pd.DataFrame:
    """Preprints matching ``query`` (Europe PMC's preprint search, relevance ranked; or bioRxiv's
    HTML search with ``html_search=True``, often blocked), paged until ``limit`` -- exactly what
    ``scllm papers search --json`` lists.

    Returns a DataFrame, one row per preprint: ``doi``, ``version``, ``date``, ``server``,
    ``category``, ``title``, ``authors`` (``"; "``-joined), ``abstract``, ``license``,
    ``published_doi`` / ``published_journal`` (the journal version, if any), ``europepmc_id``,
    ``url`` (link back to the preprint), and the rest of the record.

    Example::

        hits = scllm.papers.search("scGPT cell type annotation", limit=50)
        hits[["doi", "date", "title"]]
    """
    text = _scllm.papers_search(query, limit, html_search, _client(locals()))
    return _frame(json.loads(text))


def show(
    doi: str,
    *,
    full_text: bool = False,
    europepmc_url: Optional[str] = None,
    biorxiv_api_url: Optional[str] = None,
    biorxiv_url: Optional[str] = None,
    cache_dir: Optional[str] = None,
    no_cache: bool = False,
    min_interval_ms: int = 1000,
    deadline: int = 120,
) -> Union[pd.DataFrame, Tuple[pd.DataFrame, pd.DataFrame]]:
    """One preprint (a DOI, a ``doi.org`` link or a bioRxiv URL), as ``scllm papers show``.

    Returns a DataFrame of its versions (the columns of :func:`search`, newest last; the
    published journal version from ``pubs`` on every row). With ``full_text=True`` returns
    ``(versions, text)``: ``text`` has one row per paragraph (``kind`` ``"paragraph"``,
    ``heading`` the section path such as ``"Results > Benchmark"``, ``level``) then the figure
    and table captions and the references; ``text.attrs["source"]`` names where the JATS came
    from. When only a PDF exists ``text`` is empty and ``text.attrs`` holds ``pdf_url`` and
    ``reason``. Full text stays under each paper's licence (``license``): link back rather
    than redistribute.

    Example::

        versions, text = scllm.papers.show("10.1101/2023.10.19.563100", full_text=True)
        text[text.heading.str.startswith("Results")]
    """
    out = json.loads(_scllm.papers_show(doi, full_text, _client(locals())))
    newest = out["paper"]
    versions = []
    for v in out["versions"] or [newest]:
        # `details` rows carry no journal crosswalk; the newest record has it
        merged = dict(v)
        for k in ("published_doi", "published_journal", "europepmc_id"):
            merged[k] = merged.get(k) or newest.get(k)
        versions.append(merged)
    df = _frame(versions)
    if not full_text:
        return df
    return df, _sections(out["full_text"])
