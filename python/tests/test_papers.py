"""scllm.papers.search / show against a loopback server answering with scllm-papers' committed
synthetic fixtures (crates/scllm-papers/tests/fixtures, the routes of its tests/common/mod.rs):
the same papers as `scllm papers search --json`, versions and full text as DataFrames, and the
documented exceptions."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

import scllm
from conftest import ROOT, run_cli

PAPERS = ROOT / "crates" / "scllm-papers" / "tests" / "fixtures"
DOI = "10.1101/2099.01.01.900001"


def _answer(target: str):
    """(status, body) for a request target, as scllm-papers' `standard_routes`."""
    path = target.split("?")[0]
    api = {
        "/api/details/biorxiv/10.1101/2099.01.01.900001/na/json": "api/details_doi.json",
        "/api/details/biorxiv/10.1101/2099.02.02.900002/na/json": "api/details_pdf_only.json",
        "/api/pubs/biorxiv/10.1101/2099.01.01.900001/na/json": "api/pubs_hit.json",
        "/api/pubs/biorxiv/10.1101/2099.02.02.900002/na/json": "api/pubs_miss.json",
    }
    if path in api:
        return 200, (PAPERS / api[path]).read_bytes()
    if path.startswith("/api/details/") or path.startswith("/api/pubs/"):
        return 200, (PAPERS / "api/no_posts.json").read_bytes()
    if path == "/europepmc/search":
        decoded = unquote(target)
        if f'DOI:"{DOI}"' in decoded:
            name = "search_doi_900001.json"
        elif "DOI:" in decoded:
            name = "search_empty.json"
        elif "cursorMark=CURSOR3" in target:
            name = "search_page3.json"
        elif "cursorMark=CURSOR2" in target:
            name = "search_page2.json"
        else:
            name = "search_page1.json"
        return 200, (PAPERS / "europepmc" / name).read_bytes()
    if path == "/europepmc/PPR/PPR900001/fullTextXML":
        return 200, (PAPERS / "europepmc/PPR900001.xml").read_bytes()
    return 404, b"not found"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        status, body = _answer(self.path)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield {
        "europepmc_url": f"{base}/europepmc",
        "biorxiv_api_url": f"{base}/api",
        "biorxiv_url": f"{base}/web",
        "no_cache": True,
        "min_interval_ms": 0,
    }
    httpd.shutdown()


def test_search_pages_to_the_limit_as_the_cli(server):
    hits = scllm.papers.search("synthetic", limit=3, **server)
    assert list(hits.doi) == [DOI, "10.1101/2099.02.02.900002", "10.1101/2099.03.03.900003"]
    assert hits.loc[0, "authors"] == "Doe J; Roe R; Poe A"
    # Europe PMC gives no version: the link is the DOI's
    assert hits.loc[0, "url"] == f"https://doi.org/{DOI}"
    out = run_cli(
        "papers", "search", "synthetic", "--limit", "3", "--json", "--no-cache",
        "--min-interval-ms", "0", "--europepmc-url", server["europepmc_url"],
        "--biorxiv-api-url", server["biorxiv_api_url"], "--biorxiv-url", server["biorxiv_url"],
    )
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    assert [p["doi"] for p in cli] == list(hits.doi)
    assert [p["title"] for p in cli] == list(hits.title)
    assert [p["date"] for p in cli] == list(hits.date)
    # the limit cuts the pages
    assert len(scllm.papers.search("synthetic", limit=1, **server)) == 1


def test_show_gives_versions_and_the_full_text(server):
    versions = scllm.papers.show(f"https://doi.org/{DOI}", **server)
    assert list(versions.version) == [1, 2, 3]
    assert versions.url[2] == f"https://www.biorxiv.org/content/{DOI}v3"
    assert list(versions.date) == ["2099-01-01", "2099-02-01", "2099-03-01"]
    # the journal version (from `pubs`) on every row
    assert set(versions.published_doi) == {"10.9999/synthetic.2099.001"}
    versions, text = scllm.papers.show(DOI, full_text=True, **server)
    assert len(versions) == 3
    assert text.attrs["source"] == "europepmc:PPR/PPR900001"
    paragraphs = text[text.kind == "paragraph"]
    assert len(paragraphs) > 0 and all(paragraphs.text.str.len() > 0)
    assert {"paragraph", "reference"} <= set(text.kind)
    assert any(h.startswith("Results") for h in paragraphs.heading)
    # a preprint with only a PDF: no rows, and where the PDF is
    _, pdf = scllm.papers.show("10.1101/2099.02.02.900002", full_text=True, **server)
    assert len(pdf) == 0 and pdf.attrs["source"] == "pdf_only"
    assert pdf.attrs["pdf_url"].endswith("900002v1.full.pdf")


def test_bad_dois_and_unreachable_servers_raise(server):
    with pytest.raises(ValueError, match="DOI"):
        scllm.papers.show("not a doi", **server)
    with pytest.raises(ValueError, match="not found on bioRxiv"):
        scllm.papers.show("10.1101/2099.09.09.999999", **server)
    closed = dict(server, europepmc_url="http://127.0.0.1:9/europepmc")
    with pytest.raises(ConnectionError):
        scllm.papers.search("synthetic", deadline=2, **closed)
