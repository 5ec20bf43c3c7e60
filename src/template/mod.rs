//! Temporary minimal templating until the filters branch lands.
use minijinja::value::Value;
use minijinja::{Environment, Error, UndefinedBehavior};

pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

pub fn render_str(env: &Environment, source: &str, ctx: Value) -> Result<String, Error> {
    env.render_named_str("<template>", source, ctx)
}

pub fn render_value(env: &Environment, source: &str, ctx: Value) -> Result<Value, Error> {
    let t = source.trim();
    if t.starts_with("{{") && t.ends_with("}}") && t.matches("{{").count() == 1 {
        let e = env.compile_expression(&t[2..t.len() - 2])?;
        return e.eval(ctx);
    }
    render_str(env, source, ctx).map(Value::from)
}

pub fn eval_condition(env: &Environment, expr: &str, ctx: Value) -> Result<bool, Error> {
    Ok(env.compile_expression(expr)?.eval(ctx)?.is_true())
}

pub fn render_error_message(err: &Error) -> String {
    format!(
        "{}:{}: {}",
        err.name().unwrap_or("?"),
        err.line().unwrap_or(0),
        err
    )
}
