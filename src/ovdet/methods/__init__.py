"""One package per method: its model, its inference front (Detector or Recognizer), its trainer."""
