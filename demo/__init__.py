"""The Gradio app of `app.py`: the page, its handlers and its server settings (not part of the wheel).

`layout.build_demo` builds the page from one `build` per tab (`tabs/`); `handlers.SimilarityApp` holds the
functions the page and the HTTP API call, thin adapters over `siamese.serving`; `render`, `plots` and `media`
turn answers into markdown, figures and image files; `server` holds the launch settings.
"""

import os

# Gradio rebuilds a pandas table of its last 10,000 queue events to refresh the View API page's timing figures, by
# default twice per event: 4 ms a request after 2,000 events, 13 ms after 10,000 (gradio-app/gradio#11764 made the
# interval this variable). Read when the queue is made (demo.queue()); every 200 events keeps those figures current
# and the cost out of each request.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "200")
