"""Evaluation: benchmark loaders, the evaluation run over an OpenAI-compatible endpoint, efficiency metrics
(accuracy, tool rounds, parallel width, tokens, Cost-Aware Score), the markdown/JSON report and the Pareto plot,
and the scripted reference strategies (`hyperseyes demo` runs them: `hyperseyes_verl.demo.scripted`)."""
