//! `crossrank info`: a model's family, config, parameters, stored dtype, max length and tokenizer.

use clap::Args;
use serde_json::json;

use crossrank::engine::ModelFiles;
use crossrank::hub::resolve_model;
use crossrank::Result;

use crate::args::ModelArgs;

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let dir = resolve_model(&args.model.model)?;
    let files = ModelFiles::open(&dir, args.model.max_length)?;
    let c = &files.config;
    let t = &files.tensors;
    let dtypes: Vec<&str> = t.stored_dtypes().iter().map(|d| d.name()).collect();
    let template = files.tokenizer.template();
    let report = json!({
        "model_dir": dir.display().to_string(),
        "model_type": c.model_type,
        "family": c.family.name(),
        "segment_ids": c.family.uses_segment_ids(c),
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "head_dim": c.head_dim,
        "intermediate_size": c.intermediate_size,
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size,
        "layer_norm_eps": c.layer_norm_eps,
        "rope_base": (c.rope.base > 0.0).then_some(c.rope.base),
        "rope_divisor": (c.rope.base > 0.0).then_some(c.rope.divisor),
        "padding_idx": c.padding_idx,
        "activation": c.activation.name(),
        "parameters": c.parameter_count(),
        "stored_dtypes": dtypes,
        "declared_dtype": c.declared_dtype,
        "tensor_prefix": t.prefix,
        "tensor_names": format!("{:?}", t.scheme).to_lowercase(),
        "unused_tensors": t.unused_tensors(),
        "max_length": files.tokenizer.max_length(),
        "tokenizer": files.tokenizer.path().display().to_string(),
        "tokenizer_vocab_size": files.tokenizer.vocab_size(),
        "pair_template": {"prefix": template.prefix, "middle": template.middle, "suffix": template.suffix},
        "engine_version": crossrank::VERSION,
        "cuda_kernels": crossrank::cuda::kernel_build_info(),
    });
    if args.json {
        println!("{report:#}");
        return Ok(());
    }
    println!("model            {}", dir.display());
    println!(
        "family           {} (model_type \"{}\"): {}",
        c.family.name(),
        c.model_type,
        c.family.summary()
    );
    println!(
        "architecture     {} layers, hidden {}, {} heads × {}, intermediate {}",
        c.num_layers, c.hidden_size, c.num_heads, c.head_dim, c.intermediate_size
    );
    println!(
        "parameters       {} ({:.1} M)",
        c.parameter_count(),
        c.parameter_count() as f64 / 1e6
    );
    println!(
        "stored dtype     {}{}",
        dtypes.join(" + "),
        c.declared_dtype
            .as_ref()
            .map_or(String::new(), |d| format!(" (config says {d})"))
    );
    println!("tensor names     {:?}, prefix `{}`", t.scheme, t.prefix);
    println!(
        "vocab            {} embedding rows, tokenizer {} ids",
        c.vocab_size,
        files.tokenizer.vocab_size()
    );
    for (label, value) in c.family.info_lines(c) {
        println!("{label:<16} {value}");
    }
    println!(
        "max length       {} tokens per pair (max_position_embeddings {})",
        files.tokenizer.max_length(),
        c.max_position_embeddings
    );
    println!(
        "pair template    {:?} A {:?} B {:?}",
        template.prefix, template.middle, template.suffix
    );
    println!("score            {}(logit)", c.activation.name());
    println!("tokenizer        {}", files.tokenizer.path().display());
    println!("cuda kernels     {}", crossrank::cuda::kernel_build_info());
    let unused = t.unused_tensors();
    if !unused.is_empty() {
        println!(
            "unused tensors   {} ({}{})",
            unused.len(),
            unused[..unused.len().min(3)].join(", "),
            if unused.len() > 3 { ", ..." } else { "" }
        );
    }
    Ok(())
}
