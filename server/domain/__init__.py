"""The types and answers every layer shares: what a bundle declares (``bundle_spec``), what a Predict
call asks and what the guard decides (``predictions``), whether a prediction was right (``judge``),
and the project's errors (``errors``). Nothing here does I/O or knows a transport."""
