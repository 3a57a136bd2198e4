"""Takes a minute to import: longer than any start deadline a test sets."""
import threading

threading.Event().wait(60)
