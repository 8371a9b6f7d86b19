"""The toy runs of the whole product on a CPU box: `scripted` (`hyperseyes demo`: data, index and scripted
strategies, no training), `train` (`make demo`: data, stage-1 SFT, stage-2 RL, evaluation, report) and `tiny`
(`make train-tiny`: both recipe stages at the smallest size, with the checks of `tiny_checks`)."""
