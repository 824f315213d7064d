"""ML scaling advice for Strato: samples, models, advisor, and the evaluation harness."""
