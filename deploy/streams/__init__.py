"""Live streams: an RTSP, RTMP or HLS source watched by a StreamIngest replica (one decoder a
stream), captioned in rolling windows stored like a job's chunks, and alert rules evaluated on
every window.

    POST /v1/streams ─► streams row + its library record (a job of task 'stream')
    StreamIngest replica: claim (lease) ─► source.py decoder thread ─► windows.py sampling
        ─► watcher.py: caption + rules (the backend policy) ─► stream_store.py (window = chunk,
           searchable) ─► alerts (rules.py) ─► webhook.py (signed, retried)
"""
