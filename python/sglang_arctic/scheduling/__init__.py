"""Output-length-aware scheduling: order the waiting queue so that requests
predicted to produce shorter outputs run first (approximate shortest-job-first),
which cuts mean latency when many requests wait behind long generations. The
prediction is a learning-to-rank model (LightGBM LambdaRank) over cheap
per-request features, trained offline on traces the server records of what it
actually generated.

Modules: ``features`` (the request's feature vector), ``ranker`` (the LightGBM
model file), ``trace`` (the JSONL a server appends per finished request),
``train_ranker`` (the training CLI), ``order`` (queue order with starvation
promotion), ``scorers`` (ranker and oracle scores). All of these are
engine-agnostic: they never import SGLang or torch. ``hooks`` is the only
module that touches SGLang; its docstring is the hook ledger.
"""
