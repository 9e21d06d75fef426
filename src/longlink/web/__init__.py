"""Files for browsers, served by the HTTP app, and the demo mode's echo.

``sdk/`` is the JavaScript SDK (an ES module, also the npm package
``longlink-client``), served at ``/sdk/longlink.js`` by :mod:`longlink.web.sdk_file`.
``pages/`` holds the live-room demo (``/``) and the admin dashboard
(``/admin``), served by :mod:`longlink.web.pages` (docs/demo.md).
:mod:`longlink.web.echo` pushes UPSTREAM back to the demo rooms in demo mode.
"""
