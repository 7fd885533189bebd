"""Binance futures: USDⓈ-M (:mod:`.usdm`) and COIN-M (:mod:`.coinm`) share one protocol.

:mod:`.streams` (stream names, routes, ids), :mod:`.parse` (the pure parser), :mod:`.render`
(ticks -> events), :mod:`.dialect` (the simulated exchange's side) and :mod:`.futures` (what the
two venues have in common: subscription plan, keepalive, frame classification).
"""
