"""Files for browsers, served by the HTTP app.

``sdk/`` is the JavaScript SDK (an ES module, also the npm package
``longlink-client``), served at ``/sdk/longlink.js`` by :mod:`longlink.web.sdk_file`.
"""
