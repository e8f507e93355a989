"""An asyncio crawler that parses HTML in worker interpreters.

    tools/python examples/crawler.py [--pages N] [--quick] [--workers N]

A local HTTP server (a background thread on 127.0.0.1) serves generated
pages /page/0 .. /page/N-1, each with a known number of links.  An asyncio
client fetches every page concurrently and counts each page's links with
BeautifulSoup (falling back to the stdlib html.parser if bs4 is missing):

  * loop mode:  ``count_links(html)`` called on the event loop thread, which
    blocks the loop (and every other download) while each page is parsed;
  * pool mode:  ``await pool.run(count_links, html)`` - parsing runs in worker
    interpreters, in parallel, while the event loop keeps fetching;
  * worker-loop mode:  ``await pool.run(fetch_and_count, path)`` - fetching
    AND parsing happen in the workers: each worker's own event loop keeps
    one HTTP client (opened by an ``async def`` initializer) and runs up to
    16 ``fetch_and_count`` coroutines at once (``Pool(concurrency=16)``);
    the main program only awaits the results.

All modes must find exactly the links the server put in the pages.  The
server runs in this process, so in loop mode it also waits for the GIL that
the parsing holds; in pool mode the main interpreter only does the HTTP work,
and in worker-loop mode only the serving.
"""

import argparse
import asyncio
import contextlib
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import interpool

# Workers never run this script: count_links and the other task functions
# travel by value (their code and the globals they read).  The guard at the
# end only keeps the program importable without running it.

WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
    "tempor incididunt ut labore et dolore magna aliqua enim ad minim veniam"
).split()


# --------------------------------------------------------------- parsing
# These run in worker interpreters (pool mode) or on the loop (loop mode).


def load_parser() -> None:
    """Pool initializer: import the parser once per worker, before timing."""
    try:
        import bs4  # noqa: F401
    except ImportError:
        pass


def count_links(html: str) -> tuple[int, str]:
    """Count the <a href=...> elements of a page; also say which parser ran."""
    try:
        from bs4 import BeautifulSoup
    except ImportError:  # no bs4 (or it cannot load in a subinterpreter)
        return count_links_stdlib(html), "html.parser.HTMLParser"
    soup = BeautifulSoup(html, "html.parser")
    return len(soup.find_all("a", href=True)), "bs4"


def count_links_stdlib(html: str) -> int:
    from html.parser import HTMLParser

    class LinkCounter(HTMLParser):
        count = 0

        def handle_starttag(self, tag, attrs):
            if tag == "a" and any(name == "href" for name, _ in attrs):
                self.count += 1

    parser = LinkCounter()
    parser.feed(html)
    parser.close()
    return parser.count


# --------------------------------------------------------------- the site


def make_page(n: int, pages: int) -> tuple[str, int]:
    """Page n: deterministic (seeded by n) but varied; returns (html, links)."""
    rng = random.Random(n)
    links = rng.randint(5, 120)
    blocks = []
    for i in range(rng.randint(20, 60)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(10, 30))]
        words[2] = f"<b>{words[2]}</b>"
        words[5] = f'<span class="w{i % 7}"><i>{words[5]}</i></span>'
        blocks.append(f'<div class="block" id="b{i}"><p>{" ".join(words)}</p></div>')
        if i % 5 == 0:
            cells = "".join(f"<td>{rng.randint(0, 999)}</td>" for _ in range(6))
            blocks.append(f"<table><tr>{cells}</tr><tr>{cells}</tr></table>")
    for k in range(links):  # scatter the links through the filler
        target = rng.randrange(pages)
        link = f'<a href="/page/{target}" class="ln">link {k} to page {target}</a>'
        blocks.insert(rng.randrange(len(blocks) + 1), f"<p>{link}</p>")
    html = (
        f"<!DOCTYPE html><html><head><title>Page {n}</title></head><body>"
        f'<a id="top">no href: not a link</a><h1>Page {n}</h1>'
        + "\n".join(blocks)
        + "</body></html>"
    )
    return html, links


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self):
        body = self.server.pages.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the output quiet
        pass


class Server(ThreadingHTTPServer):
    # The default listen backlog (5) is smaller than our burst of concurrent
    # connects: the overflow would wait for a 1 s SYN retransmit.
    request_queue_size = 128
    connections = 0  # accepted so far (keep-alive: many requests each)

    def process_request(self, request, client_address):
        self.connections += 1  # only serve_forever's thread calls this
        super().process_request(request, client_address)


def start_server(pages: int):
    """Serve the pages from a background thread; return (server, thread, links)."""
    server = Server(("127.0.0.1", 0), Handler)  # port 0: any free port
    server.pages = {}
    expected = {}
    for n in range(pages):
        html, links = make_page(n, pages)
        server.pages[f"/page/{n}"] = html.encode()
        expected[n] = links
    thread = threading.Thread(target=server.serve_forever, name="http-server")
    thread.start()
    return server, thread, expected


# --------------------------------------------------------------- the client

CONCURRENCY = 16  # downloads in flight at once


class StreamClient:
    """A small HTTP/1.1 client on asyncio streams (used when httpx is not
    installed): keep-alive connections, at most `connections` at once."""

    def __init__(self, host: str, port: int, connections: int):
        self.host, self.port = host, port
        self.slots = asyncio.Semaphore(connections)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.writers: set[asyncio.StreamWriter] = set()

    async def get(self, path: str) -> str:
        async with self.slots:
            for attempt in range(2):  # an idle connection may have been closed
                reused = bool(self.idle)
                if reused:
                    reader, writer = self.idle.pop()
                else:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                    self.writers.add(writer)
                try:
                    body = await self._exchange(reader, writer, path)
                except (ConnectionError, asyncio.IncompleteReadError):
                    self._drop(writer)
                    if reused and attempt == 0:
                        continue
                    raise
                except BaseException:
                    self._drop(writer)
                    raise
                self.idle.append((reader, writer))
                return body
            raise AssertionError("unreachable")

    async def _exchange(self, reader, writer, path: str) -> str:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
        if status != b"200":
            raise RuntimeError(f"GET {path}: HTTP {status.decode()}")
        return body.decode()

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self.writers.discard(writer)
        writer.close()

    async def aclose(self) -> None:
        writers, self.writers, self.idle = self.writers, set(), []
        for writer in writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


@contextlib.asynccontextmanager
async def open_fetcher(host: str, port: int, connections: int = CONCURRENCY):
    """Yield (client name, async fetch(path) -> str); httpx if importable."""
    try:
        import httpx
    except ImportError:
        client = StreamClient(host, port, connections)
        try:
            yield "asyncio streams", client.get
        finally:
            await client.aclose()
        return
    limits = httpx.Limits(max_connections=connections)
    # trust_env=False: no proxy settings from the environment for loopback.
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def fetch(path: str) -> str:
            response = await client.get(f"http://{host}:{port}{path}")
            response.raise_for_status()
            return response.text

        yield "httpx", fetch


async def crawl(host, port, pages, parse):
    """Fetch every page concurrently; parse(html) is awaited for each one."""
    limit = asyncio.Semaphore(CONCURRENCY)
    async with open_fetcher(host, port) as (client_name, fetch):

        async def one(n):
            async with limit:
                html = await fetch(f"/page/{n}")
            return await parse(html)  # outside the semaphore: keep downloading

        results = await asyncio.gather(*(one(n) for n in range(pages)))
    return client_name, results


async def crawl_with_pool(host, port, pages, pool):
    async def parse(html):
        return await pool.run(count_links, html)  # in a worker interpreter

    return await crawl(host, port, pages, parse)


async def crawl_on_loop(host, port, pages):
    async def parse(html):
        return count_links(html)  # on the event loop thread: blocks the loop

    return await crawl(host, port, pages, parse)


async def crawl_only(host, port, pages):
    async def parse(html):
        return 0, "none"  # no parsing: what the downloads alone cost

    return await crawl(host, port, pages, parse)


# --------------------------------------------------------------- worker-loop mode
# These run in worker interpreters, on each worker's own event loop.  That
# loop lives as long as the worker, so the client the initializer opens
# serves every later fetch_and_count of that worker (up to CONCURRENCY at
# once with Pool(concurrency=CONCURRENCY)).

_worker: dict = {}  # this worker's client: its name and its fetch()


async def open_worker_client(host: str, port: int) -> None:
    """Pool initializer (async): one HTTP client per worker, on its loop."""
    load_parser()
    loop = asyncio.get_running_loop()
    opened = loop.create_future()
    # A keeper task holds the client open.  When the worker stops, interpool
    # cancels the tasks left on its loop before closing the loop: the client
    # then closes its connections cleanly.
    _worker["keeper"] = loop.create_task(_keep_client(host, port, opened))
    await opened


async def _keep_client(host: str, port: int, opened: asyncio.Future) -> None:
    try:
        async with open_fetcher(host, port, CONCURRENCY) as (name, fetch):
            _worker["client"], _worker["fetch"] = name, fetch
            opened.set_result(None)
            await asyncio.Event().wait()  # until the worker's loop closes
    except Exception as exc:
        if opened.done():
            raise
        opened.set_exception(exc)  # the initializer raises it: BrokenPool


async def fetch_and_count(path: str) -> tuple[int, str, str]:
    """In a worker: fetch the page with this worker's client and count its
    links right there; also say which client and parser ran."""
    html = await _worker["fetch"](path)
    count, parser = count_links(html)  # holds this worker's loop, not the main one
    return count, parser, _worker["client"]


async def crawl_in_workers(pages, pool):
    """The main program only awaits: fetching and parsing run in the workers."""
    return await asyncio.gather(*(pool.run(fetch_and_count, f"/page/{n}") for n in range(pages)))


def check(results, expected, mode):
    counts = [result[0] for result in results]
    for n, count in enumerate(counts):
        assert count == expected[n], f"{mode}: page {n} has {expected[n]} links, counted {count}"
    return sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=None, help="number of pages (default 300)")
    parser.add_argument("--quick", action="store_true", help="40 pages (for CI)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    pages = args.pages if args.pages is not None else 40 if args.quick else 300
    if pages < 1:
        parser.error("--pages must be at least 1")

    server, thread, expected = start_server(pages)
    host, port = server.server_address[:2]
    size = sum(map(len, server.pages.values()))
    print(f"serving {pages} pages ({size / 1e6:.1f} MB, {sum(expected.values())} links) "
          f"on http://{host}:{port}/")
    for module in ("httpx", "bs4"):  # import outside the timings below
        try:
            __import__(module)
        except ImportError:
            pass
    conns = {}  # connections the server accepted during each mode

    def timed(mode, run):
        before = server.connections
        t0 = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - t0
        conns[mode] = server.connections - before
        return result, seconds

    try:
        _, t_fetch = timed("fetch", lambda: asyncio.run(crawl_only(host, port, pages)))

        # The initializer makes every worker import this script and bs4 now
        # (wait_ready waits for it), so the timing measures only the crawl.
        with interpool.Pool(args.workers, initializer=load_parser) as pool:
            pool.wait_ready()
            (client, pooled), t_pool = timed(
                "pool", lambda: asyncio.run(crawl_with_pool(host, port, pages, pool)))

        # One client per worker, opened by the async initializer on the
        # worker's own loop; 16 coroutines per worker at once.
        with interpool.Pool(args.workers, concurrency=CONCURRENCY,
                            initializer=open_worker_client, initargs=(host, port)) as pool:
            pool.wait_ready()
            in_workers, t_workers = timed(
                "workers", lambda: asyncio.run(crawl_in_workers(pages, pool)))

        (_, looped), t_loop = timed("loop", lambda: asyncio.run(crawl_on_loop(host, port, pages)))
    finally:
        server.shutdown()  # stops serve_forever
        server.server_close()
        thread.join()

    worker_parser = pooled[0][1]
    print(f"client: {client}; parser in workers: {worker_parser}; on the loop: {looped[0][1]}")
    print(f"workers' own loops: client: {in_workers[0][2]}; parser: {in_workers[0][1]}")
    if worker_parser != looped[0][1]:
        print("note: bs4 did not load in the worker interpreters; they used html.parser")
    for n in range(min(pages, 5)):
        print(f"  /page/{n}: {pooled[n][0]} links")
    total = check(pooled, expected, "pool")
    assert check(looped, expected, "loop") == total == sum(expected.values())
    assert check(in_workers, expected, "workers' loops") == total
    print(f"total links: {total} (server put {sum(expected.values())}): OK")
    workers = f"{args.workers} worker{'s' if args.workers != 1 else ''}"
    for label, seconds, mode in [
        ("fetch only, no parsing", t_fetch, "fetch"),
        ("fetch + parse on the loop", t_loop, "loop"),
        (f"fetch on the loop, parse in {workers}", t_pool, "pool"),
        (f"fetch + parse in {workers}' own loops", t_workers, "workers"),
    ]:
        print(f"{label + ':':<42} {seconds:6.2f} s  ({conns[mode]} connections)")
    print(f"speedup (loop / workers): x{t_loop / t_pool:.2f}")
    print(f"speedup (loop / workers' own loops): x{t_loop / t_workers:.2f}")


if __name__ == "__main__":
    main()
