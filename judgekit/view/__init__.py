"""`judgekit view`: stored runs as one self-contained HTML page (summary, items, side by side).

`write_page(load_runs([...]), "view.html")` is the API behind `judgekit view RUN ... -o FILE`.
"""

from judgekit.view.data import ViewData, view_data
from judgekit.view.page import build_page, render_page, write_page

__all__ = ["ViewData", "build_page", "render_page", "view_data", "write_page"]
