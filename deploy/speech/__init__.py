"""Pure speech code (no Ray, no HTTP): the speech model (faster-whisper) and where its weights
are. The Transcriber deployment (deploy/transcriber.py) runs it; the audio it takes comes from
deploy/video/audio.py."""
