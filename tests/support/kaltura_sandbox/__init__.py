"""kaltura_sandbox - a played Kaltura virtual event served over HTTP (see README.md).

Modules: ``config`` (scenario knobs, YAML overrides), ``scenario`` (pure deterministic generator),
``statuses`` (the 11 attendance statuses and allowed paths), ``clock`` (scenario clock),
``state`` (what Kaltura shows at an instant; ground truth), ``formats`` (report table / CSV
rendering), ``ks`` (KS issue/check), ``notifications`` (signed HTTP notifications with retries),
``http_*`` (api_v3, User Profile, reports microservice, admin API), ``app``/``sandbox`` (wiring),
``testing`` (``running_sandbox`` for tests), ``__main__`` (the ``kaltura-sandbox`` command).
"""
