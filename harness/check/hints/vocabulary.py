"""Name and callee vocabulary shared by the hint patterns: which identifiers look like validation
data, training data, targets, losses, caches, optimizers, calibration, logging, epochs.
"""

from __future__ import annotations

import ast
import re


_VAL_DATA = re.compile(
    r"(?:^|_)val(?:id|idation)?_?(?:tokens?|toks?|data|ids|files?|docs?|documents?|stream|loader|np|arr"
    r"|array|buf|buffer|seqs?|sequences?|chunks?|set|split|shards?|pattern|glob|bins?|x|y|inputs?"
    r"|targets?|batch(?:es)?|windows?|text)(?:$|_)|(?:^|_)(?:val|valid|validation)$", re.I)


_CONFIGISH = re.compile(r"(?:size|len|length|every|steps?|stride|count|num|freq|interval|limit|max|min|frac"
                        r"|ratio|mode|enabled|only|path|dir|fraction|bytes|time|ms)$", re.I)


_TRAIN_DATA = re.compile(r"(?:^|_)train_(?:loader|files?|shards?|pattern|stream|data(?:set)?|ds|iter(?:ator)?"
                         r"|glob|bins?)(?:$|_)|^DistributedTokenLoader$", re.I)


_TARGET = re.compile(r"(?:^|_)(?:y|ys|yb|tgt|tgts|target|targets|label|labels|next_tok|next_token|next_tokens"
                     r"|next_ids)(?:$|_)", re.I)


_TARGET_NOT = re.compile(r"pred|hat|logit|prob|dim|axis|size|len|lim|shape|mask|scale|min|max|key|count", re.I)


_LOSSY = re.compile(r"(?:^|_)(?:nll|nlls|loss|losses|logp|logps|log_probs?|logprobs?|bpb|bits|scores?|surprisal"
                    r"|ce)(?:$|_)", re.I)


_CACHEY = re.compile(r"ngram|n_gram|cache|gram|ppm|backoff|count|table|hist|unigram|memo", re.I)


_EVALISH = re.compile(r"(?:^|_)(?:eval|evaluate|validate|validation|score|scoring|scored|bpb)(?:$|_)"
                      r"|(?:^|_)val_(?:loss|bpb)(?:$|_)", re.I)


# eval_model(x, y) is a forward pass; load_validation_tokens(...) reads data
_NOT_EVAL_CALL = re.compile(r"model|net$|module|mode$|load|read|fetch|^get_|tokens|data|shard|file|loader", re.I)


def _evalish(name: str) -> bool:
    return bool(name and _EVALISH.search(name) and not _NOT_EVAL_CALL.search(name))


_LOSS_CALL = re.compile(r"(?:^|_)(?:cross_entropy|nll_loss|log_softmax|loss_bpb|nll|bpb)(?:$|_)", re.I)


_SCORE_SUM = re.compile(r"^(?!(?:epoch|train|ttt|running|step|micro)_)\w*(?:loss_sum|nll_sum|sum_nll|total_nll"
                        r"|nll_total|byte_sum|bytes_sum|byte_count|bytes_count|token_count|tok_count|bits_sum"
                        r"|scored\w*)$", re.I)


_OPT_RECV = re.compile(r"opt|sgd|adam|muon|lion|lamb|lbfgs|rmsprop", re.I)


_NOT_OPT = re.compile(r"sched|lr_|warmup|swa|ema|progress|pbar|bar\b", re.I)


_OPT_CTOR = re.compile(r"(?:^|\.)(?:SGD|Adam\w*|LBFGS|RMSprop|Adagrad|Adadelta|Muon\w*|Lion|NAdam|RAdam)$")


_CALIB = re.compile(r"calib|gptq|hessian|awq|quantiz|smoothquant", re.I)


_NOT_CALIB = re.compile(r"eval|score|bpb|loss|dequant", re.I)


_LOG_CALL = re.compile(r"^(?:print|log\d*|logger|logging|info|debug|warning|warn|error|write|format|print0"
                       r"|pprint|tqdm|set_description|set_postfix)$", re.I)


_EPOCHY = re.compile(r"epoch|(?:^|_)ep(?:$|_)|(?:^|_)pass(?:es)?(?:$|_)|pass_idx|(?:^|_)rounds?(?:$|_)|trajector"
                     r"|(?:^|_)reps?(?:$|_)", re.I)


_DELTAY = re.compile(r"delta|bias|slot|shift|offset|logit|tweak|perturb|adj", re.I)


_NOGRAD = re.compile(r"no_grad|inference_mode")


_STORE_CALLS = re.compile(r"(?:^|\.)(?:add\.at|index_add_?|scatter_add_?|scatter_|bincount|index_put_?|put_"
                          r"|setdefault)$")


_HASH_OPS = (ast.Mult, ast.BitXor, ast.Mod, ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


_LOOPS = (ast.For, ast.AsyncFor, ast.While)


_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
