"""`newsletter serve` with one more route, for benchmarks/public_pages.py: the production app
(create_app, its middleware) and uvicorn with serve's options, plus `/_benchmark/trivial`,
which answers a file's bytes, read once. That route is the ceiling the cached pages are held
to; it lives here, around our app, so the shipped app never serves a file an environment
variable names.

    python benchmarks/_trivial_serve.py PORT FILE      (from a newsletter folder)
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import uvicorn  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from newsletter.settings import load_settings  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.web.app import create_app  # noqa: E402

TRIVIAL_PATH = "/_benchmark/trivial"


def main(port: int, file: Path) -> None:
    body = file.read_bytes()

    async def trivial(request: Request) -> Response:
        return Response(body, media_type="text/html; charset=utf-8")

    settings = load_settings()
    store = Store(settings.database_url)
    try:
        app = create_app(settings, store)
        app.router.routes.insert(0, Route(TRIVIAL_PATH, trivial, methods=["GET"]))
        # The options of newsletter.web.app.serve (access log on, as shipped).
        uvicorn.run(
            app, host="127.0.0.1", port=port, server_header=False, log_level="info", access_log=True
        )
    finally:
        store.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
