fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::compile_protos("proto/berth/v1/images.proto")?;
    Ok(())
}
