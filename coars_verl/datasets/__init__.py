"""Dataset preparation for CoARS (data_prep/README.md): loaders of the raw formats,
the LLaRA/AFL-style protocol, and deterministic, atomic writers of verl-ready parquet files.

Free of torch / verl imports so that a preparation starts fast. Command-line front ends are the
``data_prep/*.py`` scripts (``coars_verl.datasets.cli``). Import from the modules: ``loaders``
(one ``load_*`` per raw format), ``protocol`` (``prepare``, ``ProtocolConfig``), ``pipeline`` and
``writer`` (the files), ``learning_task``, ``llara``, ``reczero``.
"""
