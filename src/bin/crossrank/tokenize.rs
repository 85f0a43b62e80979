//! `crossrank tokenize`: the token ids of each pair after truncation, as JSONL, with the
//! segment ids beside them for tokenizers whose pair template uses them (BERT).

use clap::Args;
use serde_json::json;

use crossrank::engine::ModelFiles;
use crossrank::hub::resolve_model;
use crossrank::records::{input_name, open_input, LineReader};
use crossrank::resume::AtomicOutput;
use crossrank::{Error, Result};

use crate::args::{resolve_format, ModelArgs};

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input pairs (JSONL or TSV), or `-` for stdin.
    #[arg(long, short = 'i')]
    pub input: String,
    #[arg(long, short = 'o', default_value = "-")]
    pub output: String,
    #[arg(long)]
    pub format: Option<String>,
}

pub fn run(args: TokenizeArgs) -> Result<()> {
    let format = resolve_format(args.format.as_deref(), &args.input)?;
    let dir = resolve_model(&args.model.model)?;
    let tokenizer = ModelFiles::open_tokenizer(&dir, args.model.max_length)?.1;
    let name = input_name(&args.input);
    let mut reader = LineReader::new(open_input(&args.input)?);
    let mut output = AtomicOutput::create(&args.output)?;
    while let Some((line, raw)) = reader.next_line().map_err(|e| Error::io(&name, e))? {
        let record =
            crossrank::records::parse_record(format, line, raw).map_err(|msg| Error::input(&name, line, msg))?;
        let encoded = tokenizer.encode_pair(&record.query, &record.document)?;
        // Segment ids only for templates that use them (BERT), so gte/XLM-R output is unchanged.
        let line = if tokenizer.template().uses_segments() {
            json!({"input_ids": encoded.ids, "token_type_ids": encoded.type_ids})
        } else {
            json!({"input_ids": encoded.ids})
        };
        writeln!(output.writer(), "{line}").map_err(|e| Error::io(&args.output, e))?;
    }
    output.commit()
}
