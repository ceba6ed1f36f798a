"""Runtimes that run in a browser: the JavaScript packages they load (``npm``, pinned by ``package-lock.json``,
installed by ``deploytool setup``) and the driver that serves their page from 127.0.0.1 and runs it in headless
Chromium over the DevTools protocol (``driver``). A browser runtime is a file in ``deploytool/runtimes`` that
supplies the page's JavaScript and the npm files it needs."""
