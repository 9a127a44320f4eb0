//! The cold-start reference of the benchmarks: the smallest `lambda_http`
//! function (answers "Hello World"), built like the real ones.
use lambda_http::{Body, Error, Request, Response, service_fn};

async fn hello(_: Request) -> Result<Response<Body>, Error> {
    Ok(Response::new(Body::from("Hello World")))
}

fn main() -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(lambda_http::run(service_fn(hello)))
}
