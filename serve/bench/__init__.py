"""Speed measurements: ``jarag bench run`` (the whole suite, ``make bench``) and
``jarag bench batching`` (dynamic batching with random-weight models)."""
